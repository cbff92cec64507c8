"""Runs SGLang's own reference paths on the cases of test_cpu_kernels.py.

Usage: ``python _sglang_reference.py CASES_IN.pt RESULTS_OUT.pt``, started by
the test with ``TRITON_INTERPRET=1`` (Triton's CPU interpreter; it must be set
before triton is imported) and ``SGLANG_USE_CPU_ENGINE=1``.

For every case it records
- ``ref``: the outputs of SGLang's Triton kernel for the op, launched directly
  (the interpreter runs it on CPU tensors), or of SGLang's numpy reference
  (``_derive_tree_links``) where the case asks for it;
- ``site``: the outputs of SGLang's own call-site wrapper (``*_func``), which on
  the CPU engine forwards to our ``sgl_kernel`` op with SGLang's argument
  conventions (keyword names, dtypes, slicing).

Inputs and results travel as plain tensor containers (``torch.load`` with
``weights_only=True``).
"""

from __future__ import annotations

import os
import sys

assert os.environ.get("TRITON_INTERPRET") == "1", "needs TRITON_INTERPRET=1"
assert os.environ.get("SGLANG_USE_CPU_ENGINE") == "1", "needs SGLANG_USE_CPU_ENGINE=1"

import warnings  # noqa: E402

warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import sgl_kernel  # noqa: E402
from arctic_sgl_kernel.import_hook import using_fallback  # noqa: E402
from sglang.kernels.ops.kvcache.cache_move import (  # noqa: E402
    copy_all_layer_kv_cache_func,
    copy_all_layer_kv_cache_tiled,
)
from sglang.kernels.ops.speculative.cache_locs import (  # noqa: E402
    assign_draft_cache_locs_contiguous,
    assign_draft_cache_locs_contiguous_func,
    assign_extend_cache_locs,
    assign_extend_cache_locs_func,
    fill_front_out_cache_loc_func,
)
from sglang.kernels.ops.speculative.eagle import (  # noqa: E402
    fill_accept_out_cache_loc,
    fill_accept_out_cache_loc_func,
    fill_bonus_tokens,
    fill_bonus_tokens_func,
)
from sglang.kernels.ops.speculative.reconstruct_tree import (  # noqa: E402
    reconstruct_indices_from_tree_mask_func,
    reconstruct_indices_from_tree_mask_triton,
)
from sglang.kernels.ops.speculative.spec_tree import (  # noqa: E402
    build_tree_kernel_efficient_func,
    sgl_build_tree_kernel_triton,
    verify_tree_greedy_func,
    verify_tree_greedy_triton,
)
from sglang.srt.mem_cache.allocation import (  # noqa: E402
    assign_req_to_token_pool,
    assign_req_to_token_pool_func,
)
from sglang.srt.speculative.ngram_worker import _derive_tree_links  # noqa: E402
from sglang.srt.utils import next_power_of_2  # noqa: E402

# The call-site wrappers must be wired to our package, not to something else.
assert using_fallback(), "sgl_kernel is not the arctic CPU build"
assert sgl_kernel.__name__ == "sgl_kernel"


def _clone(d, *names):
    return {k: d[k].clone() for k in names}


def req_to_token_pool(a):
    bs = a["req_pool_indices"].numel()
    ref = a["req_to_token"].clone()
    if bs:
        assign_req_to_token_pool[(bs,)](
            a["req_pool_indices"], ref, a["start"], a["end"], a["out_cache_loc"],
            ref.shape[1], next_power_of_2(bs),
        )
    site = a["req_to_token"].clone()
    assign_req_to_token_pool_func(
        a["req_pool_indices"], site, a["start"], a["end"], a["out_cache_loc"], bs
    )
    return {"req_to_token": ref}, {"req_to_token": site}


def extend_cache_locs(a):
    bs = a["req_pool_indices"].numel()
    out = a["out_cache_loc"].clone()
    if bs:
        assign_extend_cache_locs[(bs,)](
            a["req_pool_indices"], a["req_to_token"], a["start"], a["end"], out,
            a["req_to_token"].shape[1], next_power_of_2(bs),
        )
    site = {}
    if a["uniform"]:
        # NGRAM/EAGLE verify: every row extends draft_token_num tokens; the
        # wrapper allocates the output itself.
        total = int((a["end"] - a["start"]).sum())
        got = assign_extend_cache_locs_func(
            req_pool_indices=a["req_pool_indices"], req_to_token=a["req_to_token"],
            start_offset=a["start"], end_offset=a["end"], batch_size=bs,
            draft_token_num=a["draft_token_num"], device="cpu",
        )
        site["out_cache_loc"] = torch.cat((got, out[total:]))
    return {"out_cache_loc": out}, site


def front_out_cache_loc(a):
    # fill_front_out_cache_loc_func == assign_extend_cache_locs over the
    # request windows of out_cache_loc (int32 table, zero starts).
    window = a["window"]
    bs = window.shape[0]
    out = a["front"].clone()
    if bs:
        assign_extend_cache_locs[(bs,)](
            torch.arange(bs), window, torch.zeros_like(a["num_front"]),
            a["num_front"], out, window.shape[1], next_power_of_2(bs),
        )
    site = a["front"].clone()
    fill_front_out_cache_loc_func(a["num_front"], window.reshape(-1), site)
    return {"front": out}, {"front": site}


def draft_cache_locs(a):
    bs = a["req_pool_indices"].numel()
    out = a["out_cache_loc"].clone()
    if bs:
        assign_draft_cache_locs_contiguous[(bs,)](
            a["req_pool_indices"], a["req_to_token"], a["seq_lens"], out,
            a["req_to_token"].shape[1], a["topk"], a["num_steps"],
        )
    site = a["out_cache_loc"].clone()
    assign_draft_cache_locs_contiguous_func(
        a["req_pool_indices"], a["req_to_token"], a["seq_lens"], site,
        a["topk"], a["num_steps"],
    )
    return {"out_cache_loc": out}, {"out_cache_loc": site}


def bonus_tokens(a):
    bs = a["accept_lens"].numel()
    out = a["bonus_tokens"].clone()
    if bs:
        fill_bonus_tokens[(bs,)](a["accept_tokens"], a["accept_lens"], out, a["stride"])
    site = a["bonus_tokens"].clone()
    fill_bonus_tokens_func(a["accept_tokens"], a["accept_lens"], site, a["stride"], bs)
    return {"bonus_tokens": out}, {"bonus_tokens": site}


def accept_out_cache_loc(a):
    size = a["accept_index"].numel()
    out = a["accept_out_cache_loc"].clone()
    if size:
        fill_accept_out_cache_loc[(size,)](
            a["accept_index"], a["out_cache_loc"], out, next_power_of_2(size)
        )
    site = a["accept_out_cache_loc"].clone()
    fill_accept_out_cache_loc_func(a["accept_index"], a["out_cache_loc"], site, size)
    return {"accept_out_cache_loc": out}, {"accept_out_cache_loc": site}


def kv_copy(a):
    def run(launch):
        bufs = [b.clone() for b in a["buffers"]]
        ptrs = torch.tensor([b.data_ptr() for b in bufs], dtype=torch.uint64)
        strides = torch.tensor([b.stride(0) * b.element_size() for b in bufs])
        launch(ptrs, strides)
        return bufs

    tgt, src = a["tgt_loc"], a["src_loc"]
    n = tgt.numel()
    tile = 128

    def triton(ptrs, strides):
        tiles = -(-int(strides.max()) // tile)  # every buffer's whole row
        copy_all_layer_kv_cache_tiled[(ptrs.numel(), tiles)](
            ptrs, strides, tgt, src, n, next_power_of_2(n), BYTES_PER_TILE=tile
        )

    def site(ptrs, strides):
        # The wrapper gets padded location buffers and slices them itself.
        pad = torch.full((3,), 10**9, dtype=torch.int64)
        copy_all_layer_kv_cache_func(
            ptrs, strides, torch.cat((tgt, pad)), torch.cat((src, pad)), n,
            next_power_of_2(n), {"byte_tiles": 1, "bytes_per_tile": tile, "num_warps": 4},
        )

    return {"buffers": run(triton)}, {"buffers": run(site)}


def build_tree(a):
    names = ("tree_mask", "positions", "retrive_index", "retrive_next_token",
             "retrive_next_sibling")
    args = (a["topk"], a["depth"], a["draft_token_num"], a["mode"])
    ref = {}
    if a["mode"] != 2:  # SGLang's Triton port has no bit-packed mode
        ref = _clone(a, *names)
        sgl_build_tree_kernel_triton(
            a["parent_list"], a["selected_index"], a["seq_lens"], *ref.values(), *args
        )
    site = _clone(a, *names)
    build_tree_kernel_efficient_func(
        a["parent_list"], a["selected_index"], a["seq_lens"], *site.values(), *args
    )
    return ref, site


def verify_greedy(a):
    outs = ("predicts", "accept_index", "accept_token_num")
    ins = (a["candidates"], a["retrive_index"], a["retrive_next_token"],
           a["retrive_next_sibling"], a["target_predict"])
    ref = _clone(a, *outs)
    if a["candidates"].shape[0]:
        verify_tree_greedy_triton(*ref.values(), *ins)
    site = _clone(a, *outs)
    verify_tree_greedy_func(*site.values(), *ins)
    return ref, site


def reconstruct(a):
    names = ("positions", "retrive_index", "retrive_next_token", "retrive_next_sibling")
    bs, n = a["bs"], a["draft_token_num"]
    ref = _clone(a, *names)
    reconstruct_indices_from_tree_mask_triton(
        a["tree_mask"], a["seq_lens"], *ref.values(), bs, n
    )
    if a["is_tree"]:
        mask = a["tree_mask"][: bs * n * n].numpy().astype(bool)
        nt, ns = _derive_tree_links(mask, bs, n)
        ref["derived_next_token"], ref["derived_next_sibling"] = nt, ns
    site = _clone(a, *names)
    reconstruct_indices_from_tree_mask_func(
        a["tree_mask"], a["seq_lens"], *site.values(), bs, n
    )
    return ref, site


RUNNERS = {f.__name__: f for f in (
    req_to_token_pool, extend_cache_locs, front_out_cache_loc, draft_cache_locs,
    bonus_tokens, accept_out_cache_loc, kv_copy, build_tree, verify_greedy,
    reconstruct,
)}


def main(src: str, dst: str) -> None:
    cases = torch.load(src, weights_only=True)
    results = {}
    for name, case in cases.items():
        ref, site = RUNNERS[case["op"]](case["args"])
        results[name] = {"ref": ref, "site": site}
    torch.save(results, dst)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main(sys.argv[1], sys.argv[2])
