"""Post-verify bookkeeping ops shared by the speculative workers.

``fill_bonus_tokens_cpu(accept_tokens, accept_lens, bonus_tokens, accept_stride)``
    ``bonus_tokens[b] = accept_tokens.flat[b * accept_stride + accept_lens[b] - 1]``
    for every ``b < accept_lens.numel()``: the last accepted token of each
    request (``accept_lens`` counts the bonus token). Cast to
    ``bonus_tokens``' dtype. Matches the Triton kernel ``fill_bonus_tokens``
    in ``sglang/kernels/ops/speculative/eagle.py``.

``fill_accept_out_cache_loc_cpu(accept_index, out_cache_loc, accept_out_cache_loc)``
    Stream compaction over ``accept_index`` (flattened, ``-1`` = padding):
    the ``k``-th entry that is not ``-1`` writes
    ``accept_out_cache_loc[k] = out_cache_loc[accept_index[that entry]]``.
    Entries of ``accept_out_cache_loc`` past the number of accepted tokens
    are left alone. Matches the Triton kernel ``fill_accept_out_cache_loc``
    in the same file (whose grid size is ``accept_index.numel()``), including
    its quirk that an index below ``-1`` takes an output slot but writes
    nothing.
"""

from __future__ import annotations

import torch

from ._common import as_long

__all__ = ["fill_bonus_tokens_cpu", "fill_accept_out_cache_loc_cpu"]


def fill_bonus_tokens_cpu(
    accept_tokens: torch.Tensor,
    accept_lens: torch.Tensor,
    bonus_tokens: torch.Tensor,
    accept_stride: int,
) -> None:
    bs = accept_lens.numel()
    if bs == 0:
        return
    last = (
        torch.arange(bs, dtype=torch.int64, device=accept_lens.device)
        * int(accept_stride)
        + as_long(accept_lens).reshape(-1)
        - 1
    )
    bonus_tokens.view(-1)[:bs].copy_(torch.take(accept_tokens, last))


def fill_accept_out_cache_loc_cpu(
    accept_index: torch.Tensor,
    out_cache_loc: torch.Tensor,
    accept_out_cache_loc: torch.Tensor,
) -> None:
    idx = as_long(accept_index).reshape(-1)
    if idx.numel() == 0:
        return
    counted = idx != -1
    dst = torch.cumsum(counted, 0) - counted.to(torch.int64)
    keep = idx > -1
    values = torch.take(out_cache_loc, idx[keep])
    accept_out_cache_loc.put_(dst[keep], values.to(accept_out_cache_loc.dtype))
