"""KV-cache bookkeeping ops of the CPU ``sgl_kernel``.

``copy_all_layer_kv_cache_cpu(data_ptrs, strides, tgt_loc, src_loc)``
    For every KV buffer ``k`` (a raw address ``data_ptrs[k]``, uint64, whose
    rows are ``strides[k]`` bytes apart and ``strides[k]`` bytes wide), copy
    row ``src_loc[i]`` to row ``tgt_loc[i]`` for all ``i``. All source rows
    are read before any target row is written, so overlapping source/target
    sets are safe. Matches the Triton kernel ``copy_all_layer_kv_cache_tiled``
    in ``sglang/kernels/ops/kvcache/cache_move.py`` (called through
    ``copy_all_layer_kv_cache_func``, which already slices the locations to
    ``num_locs``).

``assign_req_to_token_pool_cpu(req_pool_indices, req_to_token, start_offset,
end_offset, out_cache_loc, pool_len)``
    Scatter: ``req_to_token[req_pool_indices[b], start[b]:end[b]] =
    out_cache_loc[o_b : o_b + end[b] - start[b]]`` where ``o_b`` is the
    exclusive prefix sum of ``end - start``. ``pool_len`` is the row stride
    of ``req_to_token``. Matches the Triton kernel ``assign_req_to_token_pool``
    in ``sglang/srt/mem_cache/allocation.py``.

Only ctypes (to view the pool memory behind the raw addresses) and torch are
used; every op is a handful of vectorized tensor operations.
"""

from __future__ import annotations

import ctypes

import torch

from ._common import as_long, pool_slot_segments

__all__ = ["copy_all_layer_kv_cache_cpu", "assign_req_to_token_pool_cpu"]


# (address, row_bytes) -> a view of that buffer's first rows, in the widest
# integer type that divides the row and the address. A view touches memory only
# at the rows an op indexes, which the caller guarantees are inside the buffer
# now, so a view of a freed buffer is harmless; the cap bounds the dict when
# pools are re-created (tests).
_VIEWS: dict[tuple[int, int], torch.Tensor] = {}
_MAX_VIEWS = 4096
_WORDS = ((8, torch.int64), (4, torch.int32), (2, torch.int16), (1, torch.uint8))


def _rows_at(address: int, row_bytes: int, num_rows: int) -> torch.Tensor:
    """At least ``num_rows`` rows of ``row_bytes`` bytes at ``address``, as an
    integer tensor (memory owned by the KV pool, not by the view)."""
    key = (address, row_bytes)
    rows = _VIEWS.get(key)
    if rows is not None and rows.shape[0] >= num_rows:
        return rows
    size, dtype = next((s, t) for s, t in _WORDS if row_bytes % s == 0 and address % s == 0)
    raw = (ctypes.c_uint8 * (num_rows * row_bytes)).from_address(address)
    rows = torch.frombuffer(raw, dtype=dtype).view(num_rows, row_bytes // size)
    if len(_VIEWS) >= _MAX_VIEWS:
        _VIEWS.clear()
    _VIEWS[key] = rows
    return rows


def copy_all_layer_kv_cache_cpu(
    data_ptrs: torch.Tensor,
    strides: torch.Tensor,
    tgt_loc: torch.Tensor,
    src_loc: torch.Tensor,
) -> None:
    if tgt_loc.numel() != src_loc.numel():
        raise ValueError(
            f"tgt_loc and src_loc differ in length: {tgt_loc.numel()} vs {src_loc.numel()}"
        )
    if tgt_loc.numel() == 0 or data_ptrs.numel() == 0:
        return
    tgt = as_long(tgt_loc).reshape(-1)
    src = as_long(src_loc).reshape(-1)
    lo, hi = torch.aminmax(torch.cat((tgt, src)))
    if int(lo) < 0:
        raise ValueError("copy_all_layer_kv_cache_cpu: negative KV location")
    # Only rows [0, hi] are ever touched, so a view that long stays inside
    # each buffer whatever its real size.
    num_rows = int(hi) + 1
    for address, row_bytes in zip(data_ptrs.tolist(), strides.tolist()):
        rows = _rows_at(int(address), int(row_bytes), num_rows)
        # index_select gathers every source row before index_copy_ writes.
        rows.index_copy_(0, tgt, rows.index_select(0, src))


def assign_req_to_token_pool_cpu(
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
    dst, out_pos = seg
    values = torch.take(out_cache_loc, out_pos)
    req_to_token.put_(dst, values.to(req_to_token.dtype))
