"""Gathers of KV-cache locations out of ``req_to_token`` for speculative decoding.

``assign_extend_cache_locs_cpu(req_pool_indices, req_to_token, start_offset,
end_offset, out_cache_loc, pool_len)``
    Gather, the inverse of ``assign_req_to_token_pool_cpu``:
    ``out_cache_loc[o_b : o_b + end[b] - start[b]] =
    req_to_token[req_pool_indices[b], start[b]:end[b]]`` with ``o_b`` the
    exclusive prefix sum of ``end - start``; entries of ``out_cache_loc``
    past the total are left alone. ``pool_len`` is the row stride of
    ``req_to_token``; the batch size is ``req_pool_indices.numel()``. Values
    are cast to ``out_cache_loc``'s dtype (SGLang passes int32 tables and
    int64 outputs). Matches the Triton kernel ``assign_extend_cache_locs``
    in ``sglang/kernels/ops/speculative/cache_locs.py`` (used by
    ``assign_extend_cache_locs_func``, NGRAM/EAGLE verify, and
    ``fill_front_out_cache_loc_func``).

``assign_draft_cache_locs_contiguous_cpu(req_pool_indices, req_to_token,
seq_lens, out_cache_loc, pool_len, topk, speculative_num_steps)``
    With ``L = topk * speculative_num_steps``:
    ``out_cache_loc[b*L : (b+1)*L] = req_to_token[req_pool_indices[b],
    seq_lens[b] : seq_lens[b] + L]``. Matches the Triton kernel
    ``assign_draft_cache_locs_contiguous`` (without its optional
    ``positions``/``mrope`` outputs, which the CPU call site never requests).
"""

from __future__ import annotations

import torch

from ._common import as_long, pool_slot_segments

__all__ = ["assign_extend_cache_locs_cpu", "assign_draft_cache_locs_contiguous_cpu"]


def assign_extend_cache_locs_cpu(
    req_pool_indices: torch.Tensor,
    req_to_token: torch.Tensor,
    start_offset: torch.Tensor,
    end_offset: torch.Tensor,
    out_cache_loc: torch.Tensor,
    pool_len: int,
) -> None:
    seg = pool_slot_segments(req_pool_indices, start_offset, end_offset, pool_len)
    if seg is None:
        return
    src, out_pos = seg
    values = torch.take(req_to_token, src)
    out_cache_loc.put_(out_pos, values.to(out_cache_loc.dtype))


def assign_draft_cache_locs_contiguous_cpu(
    req_pool_indices: torch.Tensor,
    req_to_token: torch.Tensor,
    seq_lens: torch.Tensor,
    out_cache_loc: torch.Tensor,
    pool_len: int,
    topk: int,
    speculative_num_steps: int,
) -> None:
    bs = req_pool_indices.numel()
    copy_len = int(topk) * int(speculative_num_steps)
    if bs == 0 or copy_len == 0:
        return
    cols = as_long(seq_lens[:bs]).unsqueeze(1) + torch.arange(
        copy_len, dtype=torch.int64, device=seq_lens.device
    )
    src = as_long(req_pool_indices).unsqueeze(1) * int(pool_len) + cols
    values = torch.take(req_to_token, src).reshape(-1)
    out_cache_loc.view(-1)[: bs * copy_len].copy_(values)
