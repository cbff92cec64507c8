"""Small tensor helpers shared by the CPU ops (not part of the public surface)."""

from __future__ import annotations

import torch

_LONG = torch.int64


def as_long(t: torch.Tensor) -> torch.Tensor:
    """``t`` as int64 (no copy when it already is)."""
    return t if t.dtype == _LONG else t.to(_LONG)


def ragged_segments(
    start: torch.Tensor, end: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Expand per-row ranges ``[start[b], end[b])`` into flat element lists.

    Returns ``(row, col, out_pos)``: for every element copied, its batch row,
    its column ``start[b] + j`` and its position in the packed output, which
    starts row ``b`` at the exclusive prefix sum of ``end - start`` over the
    rows before it. The prefix sum uses the raw lengths (as the Triton kernels
    do); a row with ``end <= start`` copies nothing. ``None`` when nothing is
    copied.
    """
    start = as_long(start)
    end = as_long(end)
    lens = end - start
    counts = lens.clamp_min(0)
    total = int(counts.sum())
    if total == 0:
        return None
    bs = lens.numel()
    row = torch.repeat_interleave(
        torch.arange(bs, dtype=_LONG, device=lens.device), counts, output_size=total
    )
    seg_first = torch.cumsum(counts, 0) - counts  # where row b begins in the flat list
    j = torch.arange(total, dtype=_LONG, device=lens.device) - seg_first[row]
    out_first = torch.cumsum(lens, 0) - lens  # where row b begins in the output
    return row, start[row] + j, out_first[row] + j


def pool_slot_segments(
    req_pool_indices: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
    pool_len: int,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """For the ranges ``[start[b], end[b])`` of request rows ``req_pool_indices[b]``:
    the flat (row-major) index of every element in ``req_to_token`` and its
    position in the packed output (see ``ragged_segments``). Flat indices are
    the kernels' ``req_to_token + req * pool_len + col`` pointer arithmetic,
    for ``torch.take`` / ``Tensor.put_``."""
    bs = req_pool_indices.numel()
    seg = ragged_segments(start[:bs], end[:bs])
    if seg is None:
        return None
    row, col, out_pos = seg
    return as_long(req_pool_indices)[row] * int(pool_len) + col, out_pos
