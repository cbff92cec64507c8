"""The CPU ``sgl_kernel`` ops against SGLang's own reference paths.

Three oracles:
1. Slow, obviously-correct Python ports of the CUDA kernels (``cuda_*`` below,
   written from ``sglang/kernels/jit/include/sgl_kernel/speculative/*.cuh``)
   for the tree ops: the sgl_kernel op contract is the CUDA one, and SGLang's
   Triton port lacks the bit-packed tree-mask mode.
2. Direct checks of the import hook in fresh interpreters.
3. SGLang's Triton kernels, run on CPU by Triton's interpreter in a subprocess
   (``_sglang_reference.py``; ``TRITON_INTERPRET=1`` must be set before triton
   is imported, so it cannot run in this process). Every op has a Triton
   reference that the interpreter runs. The same subprocess also runs SGLang's
   own call-site wrappers (``*_func``), which on the CPU engine call our ops
   with SGLang's argument conventions, and SGLang's numpy
   ``_derive_tree_links`` for the NGRAM links.

Inputs are random (several seeds and batch sizes) plus edge cases: zero-length
ranges, untouched output tails, ``-1`` padding, orphan tree nodes, depth-1 and
chain trees, 1-node trees, uint8 masks, dirty bit-packed masks, overlapping KV
copies, odd KV row widths.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import sgl_kernel
from sgl_kernel.speculative import reconstruct_indices_from_tree_mask

HERE = Path(__file__).resolve().parent
LONG, INT = torch.int64, torch.int32

OP_NAMES = [
    "copy_all_layer_kv_cache_cpu",
    "assign_req_to_token_pool_cpu",
    "build_tree_kernel_efficient_cpu",
    "verify_tree_greedy_cpu",
    "assign_draft_cache_locs_contiguous_cpu",
    "assign_extend_cache_locs_cpu",
    "fill_accept_out_cache_loc_cpu",
    "fill_bonus_tokens_cpu",
]


# --------------------------------------------------------------------------
# Case generation (deterministic)
# --------------------------------------------------------------------------


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ranges(g, bs, max_start, max_len, uniform=None):
    start = torch.randint(0, max_start, (bs,), generator=g)
    if uniform is not None:
        lens = torch.full((bs,), uniform)
    else:
        lens = torch.randint(0, max_len + 1, (bs,), generator=g)
        if bs > 1:
            lens[torch.randint(0, bs, (1,), generator=g)] = 0  # an empty range
    return start, start + lens


def _random_parents(g, n, breadth_bias=0.5):
    """par[i] < i for i >= 1: a tree in topological node order."""
    par = [-1]
    for i in range(1, n):
        if torch.rand((), generator=g) < breadth_bias:
            par.append(int(torch.randint(0, i, (), generator=g)))
        else:
            par.append(i - 1)
    return par


def _links_from_parents(par):
    n = len(par)
    nt, ns = [-1] * n, [-1] * n
    for i in range(n - 1, 0, -1):  # front-insert, so lists end up ascending
        p = par[i]
        ns[i] = nt[p]
        nt[p] = i
    return nt, ns


def _ancestor_mask(par):
    n = len(par)
    m = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        j = i
        while j >= 0:
            m[i, j] = True
            j = par[j]
    return m


def _eagle_draft(g, bs, topk, depth, n):
    """parent_list / selected_index exactly as EAGLE's draft loop builds them
    (select_top_k_tokens + organize_draft_results)."""
    scores = torch.rand(bs, topk, generator=g).sort(dim=-1, descending=True).values
    score_list = [scores]
    parents = [torch.arange(-1, topk).expand(bs, topk + 1)]
    for i in range(1, depth):
        expand = scores.unsqueeze(2) * torch.rand(bs, topk, topk, generator=g)
        score_list.append(expand.flatten(1))
        scores, idx = expand.flatten(1).topk(topk, dim=-1)
        parents.append(idx + topk * topk * (i - 1) + topk)
    flat = torch.cat(score_list, 1)
    sel = flat.topk(n - 1, dim=-1).indices.sort(dim=-1).values
    if depth > 1:
        parent_list = torch.cat(parents[:-1], 1).contiguous()
    else:
        parent_list = torch.empty(bs, 0, dtype=LONG)
    return parent_list, sel.contiguous()


def _build_tree_case(g, bs, topk, depth, n, mode, orphan=False, uint8=False):
    parent_list, sel = _eagle_draft(g, bs, topk, depth, n)
    if orphan:
        # Make the parent token of one deeper node unselectable: that node (and
        # its siblings) lose their parent; the kernels must stay defined.
        slots = sel // topk
        b, i = [int(x) for x in (slots > 0).nonzero()[0]]
        parent_list = parent_list.clone()
        parent_list[b, slots[b, i]] = 10**6
    seq_lens = torch.randint(1, 12, (bs,), generator=g)
    if mode == 0:
        size = int(seq_lens.sum()) * n + n * n * bs
    elif mode == 1:
        size = n * n * bs
    else:
        size = n * bs
    if mode == 2:
        dtype = {1: torch.uint8, 2: torch.int16, 4: torch.int32}[
            4 if n > 16 else (2 if n > 8 else 1)
        ]
        tree_mask = torch.zeros(size, dtype=dtype)
    else:
        # Random prefill shows which bytes the kernel leaves to the caller.
        tree_mask = torch.rand(size, generator=g) < 0.5
        if uint8:
            tree_mask = tree_mask.to(torch.uint8)
    full = torch.full((bs, n), -1, dtype=LONG)
    return {
        "op": "build_tree",
        "args": {
            "parent_list": parent_list, "selected_index": sel, "seq_lens": seq_lens,
            "tree_mask": tree_mask, "positions": torch.full((bs * n,), -5, dtype=LONG),
            "retrive_index": full.clone(), "retrive_next_token": full.clone(),
            "retrive_next_sibling": full.clone(),
            "topk": topk, "depth": depth, "draft_token_num": n, "mode": mode,
        },
    }


def _tree_links_batch(pars):
    bs, n = len(pars), len(pars[0])
    ri = (torch.arange(bs) * n).unsqueeze(1) + torch.arange(n)
    nts, nss = zip(*(_links_from_parents(p) for p in pars))
    return ri, torch.tensor(nts, dtype=LONG), torch.tensor(nss, dtype=LONG)


def _verify_case(g, bs, n, num_spec, vocab=3, match_p=0.7, wide=False):
    """Random trees and tokens. ``wide``: bushy trees whose child lists hold
    exactly one matching child at a random place, so the sibling walk must go
    deep."""
    pars = [_random_parents(g, n, 0.9 if wide else 0.5) for _ in range(bs)]
    ri, nt, ns = _tree_links_batch(pars)
    if wide:
        target = torch.randint(0, 1000, (bs, n), generator=g)
        cand = torch.randint(1000, 2000, (bs, n), generator=g)  # never matches
        for b in range(bs):
            for p in range(n):
                kids = [i for i in range(n) if pars[b][i] == p]
                if kids and torch.rand((), generator=g) < 0.9:
                    pick = kids[int(torch.randint(0, len(kids), (), generator=g))]
                    cand[b, pick] = target[b, p]
    else:
        target = torch.randint(0, vocab, (bs, n), generator=g)
        cand = torch.randint(0, vocab, (bs, n), generator=g)
        for b in range(bs):  # bias towards acceptance so paths get deep
            for i in range(1, n):
                if torch.rand((), generator=g) < match_p:
                    cand[b, i] = target[b, pars[b][i]]
    return {
        "op": "verify_greedy",
        "args": {
            "predicts": torch.full((bs * n,), -3, dtype=INT),
            "accept_index": torch.full((bs, num_spec), -1, dtype=INT),
            "accept_token_num": torch.full((bs,), 99, dtype=INT),
            "candidates": cand, "retrive_index": ri, "retrive_next_token": nt,
            "retrive_next_sibling": ns, "target_predict": target,
        },
    }


def _reconstruct_case(g, bs, n, is_tree, uint8=False, spare_rows=0):
    if is_tree:
        mask = torch.stack([_ancestor_mask(_random_parents(g, n)) for _ in range(bs)])
    else:
        mask = torch.rand(bs, n, n, generator=g) < 0.4
    mask = mask.reshape(-1)
    # Preallocated buffers (max batch) are longer than this batch needs.
    mask = torch.cat((mask, torch.rand(spare_rows * n * n, generator=g) < 0.5))
    if uint8:
        mask = mask.to(torch.uint8)
    rows = bs + spare_rows
    full = torch.full((rows, n), -7, dtype=LONG)
    return {
        "op": "reconstruct",
        "args": {
            "tree_mask": mask, "seq_lens": torch.randint(0, 50, (bs,), generator=g),
            "positions": torch.full((rows * n,), -7, dtype=LONG)[: bs * n],
            "retrive_index": full.clone()[:bs], "retrive_next_token": full.clone()[:bs],
            "retrive_next_sibling": full.clone()[:bs],
            "bs": bs, "draft_token_num": n, "is_tree": is_tree,
        },
    }


def make_cases() -> dict:
    cases = {}
    for seed, bs in enumerate([1, 3, 8, 17]):
        g = _gen(100 + seed)
        num_reqs, pool_len = bs + 3, 300
        rpi = torch.randperm(num_reqs, generator=g)[:bs]
        table = torch.randint(0, 10**6, (num_reqs, pool_len), generator=g, dtype=INT)
        for uniform in (None, 6):
            start, end = _ranges(g, bs, 150, 90, uniform)
            total = int((end - start).sum())
            tag = f"s{seed}-bs{bs}-{'uniform' if uniform else 'ragged'}"
            cases[f"req_to_token_pool-{tag}"] = {
                "op": "req_to_token_pool",
                "args": {
                    "req_pool_indices": rpi, "req_to_token": table, "start": start,
                    "end": end, "out_cache_loc": torch.randint(0, 10**6, (total,), generator=g),
                },
            }
            cases[f"extend_cache_locs-{tag}"] = {
                "op": "extend_cache_locs",
                "args": {
                    "req_pool_indices": rpi, "req_to_token": table, "start": start,
                    "end": end, "out_cache_loc": torch.full((total + 4,), -9, dtype=LONG),
                    "uniform": uniform is not None, "draft_token_num": uniform or 0,
                },
            }
        width = 8
        num_front = torch.randint(1, width + 1, (bs,), generator=g)
        cases[f"front_out_cache_loc-s{seed}-bs{bs}"] = {
            "op": "front_out_cache_loc",
            "args": {
                "window": torch.randint(0, 10**6, (bs, width), generator=g),
                "num_front": num_front,
                "front": torch.zeros(bs * width, dtype=LONG),
            },
        }
        for topk, steps in [(1, 3), (4, 2), (4, 40)]:  # 160 > one 128-wide block
            seq = torch.randint(0, 100, (bs,), generator=g)
            cases[f"draft_cache_locs-s{seed}-bs{bs}-k{topk}-st{steps}"] = {
                "op": "draft_cache_locs",
                "args": {
                    "req_pool_indices": rpi, "req_to_token": table, "seq_lens": seq,
                    "out_cache_loc": torch.full((bs * topk * steps + 3,), -9, dtype=LONG),
                    "topk": topk, "num_steps": steps,
                },
            }
        stride = 5
        cases[f"bonus_tokens-s{seed}-bs{bs}"] = {
            "op": "bonus_tokens",
            "args": {
                "accept_tokens": torch.randint(0, 5000, (bs, stride), generator=g, dtype=INT),
                "accept_lens": torch.randint(1, stride + 1, (bs,), generator=g, dtype=INT),
                "bonus_tokens": torch.zeros(bs, dtype=INT), "stride": stride,
            },
        }
        n = 6
        acc = torch.full((bs, stride), -1, dtype=INT)
        lens = torch.randint(0, stride + 1, (bs,), generator=g)
        for b in range(bs):
            picks = torch.randperm(n, generator=g)[: int(lens[b])].sort().values
            acc[b, : len(picks)] = (b * n + picks).to(INT)
        cases[f"accept_out_cache_loc-s{seed}-bs{bs}"] = {
            "op": "accept_out_cache_loc",
            "args": {
                "accept_index": acc,
                "out_cache_loc": torch.randint(0, 10**6, (bs * n,), generator=g),
                "accept_out_cache_loc": torch.full((acc.numel(),), -2, dtype=LONG),
            },
        }
        rows = 40
        bufs = []
        for layer in range(2):
            bufs.append(torch.randn(rows, 2, 8, generator=g).to(torch.bfloat16))  # K
            bufs.append(torch.randn(rows, 3, 40, generator=g))  # V: other stride
        perm = torch.randperm(rows, generator=g)
        num = min(2 * bs, rows // 2)
        tgt = perm[:num]
        # Sources overlap the targets: values must be read before any write.
        src = torch.cat((perm[num // 2 : num], perm[num : num + num - num // 2]))
        cases[f"kv_copy-s{seed}-n{num}"] = {
            "op": "kv_copy",
            "args": {"buffers": bufs, "tgt_loc": tgt, "src_loc": src},
        }

    tree_shapes = [  # (bs, topk, depth, n)
        (1, 1, 3, 4), (3, 2, 3, 6), (4, 4, 4, 8), (2, 4, 5, 12), (5, 8, 3, 16),
        (6, 1, 6, 7), (2, 3, 1, 4), (3, 4, 3, 20),
    ]
    for k, (bs, topk, depth, n) in enumerate(tree_shapes):
        for mode in (0, 1, 2):
            g = _gen(200 + 3 * k + mode)
            cases[f"build_tree-bs{bs}-k{topk}-d{depth}-n{n}-m{mode}"] = _build_tree_case(
                g, bs, topk, depth, n, mode
            )
    cases["build_tree-orphan-m0"] = _build_tree_case(_gen(300), 3, 2, 4, 7, 0, orphan=True)
    cases["build_tree-orphan-m1"] = _build_tree_case(_gen(301), 3, 2, 4, 7, 1, orphan=True)
    cases["build_tree-uint8-m1"] = _build_tree_case(_gen(302), 2, 2, 3, 5, 1, uint8=True)
    # The packed kernel overwrites each row's first byte and ORs into the rest.
    for n in (6, 12, 24):
        case = _build_tree_case(_gen(303 + n), 3, 4, 4, n, 2)
        mask = case["args"]["tree_mask"]
        mask.view(torch.uint8).copy_(
            torch.randint(0, 256, (mask.numel() * mask.element_size(),), generator=_gen(n),
                          dtype=torch.uint8)
        )
        cases[f"build_tree-packed-dirty-n{n}-m2"] = case

    for k, (bs, n, num_spec) in enumerate(
        [(1, 4, 4), (3, 8, 4), (8, 8, 8), (5, 12, 6), (4, 1, 1), (2, 6, 2)]
    ):
        for seed in range(2):
            cases[f"verify-bs{bs}-n{n}-s{num_spec}-seed{seed}"] = _verify_case(
                _gen(400 + 2 * k + seed), bs, n, num_spec
            )
    for seed, (bs, n) in enumerate([(4, 10), (3, 16)]):
        cases[f"verify-wide-bs{bs}-n{n}"] = _verify_case(_gen(450 + seed), bs, n, n, wide=True)

    for k, (bs, n) in enumerate([(1, 1), (2, 2), (3, 5), (4, 8), (7, 8), (2, 16)]):
        cases[f"reconstruct-tree-bs{bs}-n{n}"] = _reconstruct_case(_gen(500 + k), bs, n, True)
        cases[f"reconstruct-random-bs{bs}-n{n}"] = _reconstruct_case(_gen(600 + k), bs, n, False)
    cases["reconstruct-tree-uint8-spare"] = _reconstruct_case(
        _gen(700), 3, 8, True, uint8=True, spare_rows=2
    )
    return cases


CASES = make_cases()


@pytest.fixture(scope="module", autouse=True)
def _sglang_reference_run(tmp_path_factory):
    """Start SGLang's references on every case in a subprocess, in the
    background: the tests that do not need them (CUDA ports, import hook) run
    first, meanwhile."""
    tmp = tmp_path_factory.mktemp("sglang_ref")
    src, dst = tmp / "cases.pt", tmp / "results.pt"
    torch.save(CASES, src)
    env = dict(os.environ, TRITON_INTERPRET="1", SGLANG_USE_CPU_ENGINE="1")
    env.pop("SGLANG_ARCTIC_DISABLE_CPU_KERNELS", None)
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_sglang_reference.py"), str(src), str(dst)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    yield proc, dst
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def sglang_results(_sglang_reference_run):
    proc, dst = _sglang_reference_run
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-4000:]
    return torch.load(dst, weights_only=True)


# --------------------------------------------------------------------------
# Running our ops on a case
# --------------------------------------------------------------------------


def run_ours(case) -> dict:
    """Our op, called directly in this process, on a copy of the case's inputs."""
    op, a = case["op"], case["args"]
    if op == "req_to_token_pool":
        table = a["req_to_token"].clone()
        sgl_kernel.assign_req_to_token_pool_cpu(
            a["req_pool_indices"], table, a["start"], a["end"], a["out_cache_loc"],
            table.shape[1],
        )
        return {"req_to_token": table}
    if op == "extend_cache_locs":
        out = a["out_cache_loc"].clone()
        sgl_kernel.assign_extend_cache_locs_cpu(
            a["req_pool_indices"], a["req_to_token"], a["start"], a["end"], out,
            a["req_to_token"].shape[1],
        )
        return {"out_cache_loc": out}
    if op == "front_out_cache_loc":
        window, bs = a["window"], a["window"].shape[0]
        out = a["front"].clone()
        sgl_kernel.assign_extend_cache_locs_cpu(
            torch.arange(bs), window.int(), torch.zeros_like(a["num_front"]),
            a["num_front"], out, window.shape[1],
        )
        return {"front": out}
    if op == "draft_cache_locs":
        out = a["out_cache_loc"].clone()
        sgl_kernel.assign_draft_cache_locs_contiguous_cpu(
            a["req_pool_indices"], a["req_to_token"], a["seq_lens"], out,
            a["req_to_token"].shape[1], a["topk"], a["num_steps"],
        )
        return {"out_cache_loc": out}
    if op == "bonus_tokens":
        out = a["bonus_tokens"].clone()
        sgl_kernel.fill_bonus_tokens_cpu(a["accept_tokens"], a["accept_lens"], out, a["stride"])
        return {"bonus_tokens": out}
    if op == "accept_out_cache_loc":
        out = a["accept_out_cache_loc"].clone()
        sgl_kernel.fill_accept_out_cache_loc_cpu(a["accept_index"], a["out_cache_loc"], out)
        return {"accept_out_cache_loc": out}
    if op == "kv_copy":
        bufs = [b.clone() for b in a["buffers"]]
        ptrs = torch.tensor([b.data_ptr() for b in bufs], dtype=torch.uint64)
        strides = torch.tensor([b.stride(0) * b.element_size() for b in bufs])
        sgl_kernel.copy_all_layer_kv_cache_cpu(ptrs, strides, a["tgt_loc"], a["src_loc"])
        return {"buffers": bufs}
    if op == "build_tree":
        out = {k: a[k].clone() for k in ("tree_mask", "positions", "retrive_index",
                                          "retrive_next_token", "retrive_next_sibling")}
        sgl_kernel.build_tree_kernel_efficient_cpu(
            a["parent_list"], a["selected_index"], a["seq_lens"], *out.values(),
            a["topk"], a["depth"], a["draft_token_num"], a["mode"],
        )
        return out
    if op == "verify_greedy":
        out = {k: a[k].clone() for k in ("predicts", "accept_index", "accept_token_num")}
        sgl_kernel.verify_tree_greedy_cpu(
            predicts=out["predicts"], accept_index=out["accept_index"],
            accept_token_num=out["accept_token_num"], candidates=a["candidates"],
            retrive_index=a["retrive_index"], retrive_next_token=a["retrive_next_token"],
            retrive_next_sibling=a["retrive_next_sibling"], target_predict=a["target_predict"],
        )
        return out
    if op == "reconstruct":
        out = {k: a[k].clone() for k in ("positions", "retrive_index",
                                          "retrive_next_token", "retrive_next_sibling")}
        reconstruct_indices_from_tree_mask(
            a["tree_mask"], a["seq_lens"], *out.values(), a["bs"], a["draft_token_num"]
        )
        return out
    raise AssertionError(op)


def assert_same(got: dict, want: dict, what: str):
    assert want, f"{what}: no reference outputs"
    for key, ref in want.items():
        if key.startswith("derived_"):
            continue
        val = got[key]
        if isinstance(ref, list):
            assert len(val) == len(ref)
            for i, (x, y) in enumerate(zip(val, ref)):
                assert torch.equal(x, y), f"{what}: {key}[{i}] differs"
        else:
            assert val.dtype == ref.dtype, f"{what}: {key} dtype {val.dtype} != {ref.dtype}"
            assert torch.equal(val, ref), f"{what}: {key} differs\n got {val}\nwant {ref}"


# --------------------------------------------------------------------------
# 1. Against slow ports of the CUDA kernels (the sgl_kernel op contract)
# --------------------------------------------------------------------------


def cuda_build_tree(a) -> dict:
    """build_tree_efficient / build_tree_efficient_partial_packed, one thread
    at a time. Valid trees only (the CUDA kernel reads out of bounds otherwise)."""
    sel, plist = a["selected_index"].tolist(), a["parent_list"].tolist()
    seq = a["seq_lens"].tolist()
    topk, n, mode = a["topk"], a["draft_token_num"], a["mode"]
    bs = len(seq)
    mask = a["tree_mask"].clone()
    raw = mask.view(-1).view(torch.uint8)
    pos = a["positions"].clone()
    ri, nt, ns = (a[k].clone() for k in ("retrive_index", "retrive_next_token",
                                         "retrive_next_sibling"))
    nbytes = 4 if n > 16 else (2 if n > 8 else 1)

    def find(b, tok):
        return next(k for k in range(n - 1) if sel[b][k] == tok)

    for b in range(bs):
        seq_tree_idx = n * n * b + sum(seq[:b]) * n
        for tid in range(n):
            if mode == 2:
                tti = (b * n + tid) * nbytes
                raw[tti] = 1
            else:
                if mode == 0:
                    tti = seq_tree_idx + (seq[b] + n) * tid + seq[b] + 1
                else:
                    tti = n * n * b + n * tid + 1
                raw[tti - 1] = 1
                for i in range(n - 1):
                    raw[tti + i] = 0
            if tid == 0:
                pos[b * n] = seq[b]
                for i in range(n - 1, 0, -1):
                    ri[b, i] = b * n + i
                    slot = sel[b][i - 1] // topk
                    pp = 0 if slot == 0 else find(b, plist[b][slot]) + 1
                    if nt[b, pp] != -1:
                        ns[b, i] = nt[b, pp]
                    nt[b, pp] = i
                ri[b, 0] = b * n
            else:
                cur, depth = tid - 1, 0
                while True:
                    depth += 1
                    if mode == 2:
                        raw[tti + (cur + 1) // 8] |= 1 << ((cur + 1) % 8)
                    else:
                        raw[tti + cur] = 1
                    slot = sel[b][cur] // topk
                    if slot == 0:
                        break
                    cur = find(b, plist[b][slot])
                pos[b * n + tid] = depth + seq[b]
    return {"tree_mask": mask, "positions": pos, "retrive_index": ri,
            "retrive_next_token": nt, "retrive_next_sibling": ns}


def cuda_verify_greedy(a) -> dict:
    """VerifyTreeGreedy, one block at a time."""
    pred, acc, num = (a[k].clone() for k in ("predicts", "accept_index", "accept_token_num"))
    cand, ri = a["candidates"], a["retrive_index"].reshape(-1)
    nt, ns = a["retrive_next_token"], a["retrive_next_sibling"]
    tp = a["target_predict"].reshape(-1)
    bs, n = cand.shape
    for b in range(bs):
        last = int(ri[b * n])
        acc[b, 0] = last
        count, cur = 0, 0
        for _ in range(1, acc.shape[1]):
            cur = int(nt[b, cur])
            while cur != -1:
                if int(cand[b, cur]) == int(tp[last]):
                    pred[last] = tp[last]
                    count += 1
                    acc[b, count] = int(ri[b * n + cur])
                    last = int(ri[b * n + cur])
                    break
                cur = int(ns[b, cur])
            if cur == -1:
                break
        num[b] = count
        pred[last] = tp[last]
    return {"predicts": pred, "accept_index": acc, "accept_token_num": num}


def cuda_reconstruct(a) -> dict:
    """reconstructIndicesFromTreeMask, one thread at a time."""
    bs, n = a["bs"], a["draft_token_num"]
    m = a["tree_mask"].reshape(-1).tolist()
    pos, ri, nt, ns = (a[k].clone() for k in ("positions", "retrive_index",
                                              "retrive_next_token", "retrive_next_sibling"))
    for b in range(bs):
        off = b * n * n
        for tid in range(n):
            depth, parent = 0, -1
            for i in range(tid - 1, -1, -1):
                if m[off + tid * n + i]:
                    depth += 1
                    if parent == -1:
                        parent = i
            ri[b, tid] = b * n + tid
            pos[b * n + tid] = depth + int(a["seq_lens"][b])
            nt[b, tid] = next((i for i in range(tid + 1, n) if m[off + i * n + tid]), -1)
            sib = -1
            if parent != -1:
                for i in range(tid + 1, n):
                    if m[off + i * n + parent] and not any(
                        m[off + i * n + j] for j in range(parent + 1, i)
                    ):
                        sib = i
                        break
            ns[b, tid] = sib
    return {"positions": pos, "retrive_index": ri, "retrive_next_token": nt,
            "retrive_next_sibling": ns}


@pytest.mark.parametrize("name", [k for k, c in CASES.items() if c["op"] == "build_tree"
                                  and "orphan" not in k])
def test_build_tree_matches_cuda_kernel(name):
    a = CASES[name]["args"]
    assert_same(run_ours(CASES[name]), cuda_build_tree(a), name)


@pytest.mark.parametrize("name", [k for k, c in CASES.items() if c["op"] == "verify_greedy"])
def test_verify_greedy_matches_cuda_kernel(name):
    assert_same(run_ours(CASES[name]), cuda_verify_greedy(CASES[name]["args"]), name)


@pytest.mark.parametrize("name", [k for k, c in CASES.items() if c["op"] == "reconstruct"])
def test_reconstruct_matches_cuda_kernel(name):
    assert_same(run_ours(CASES[name]), cuda_reconstruct(CASES[name]["args"]), name)


def test_verify_greedy_accepts_deep_paths():
    """The random cases must exercise real acceptance, not just the root."""
    lens = [
        int(run_ours(c)["accept_token_num"].max())
        for c in CASES.values() if c["op"] == "verify_greedy"
    ]
    assert max(lens) >= 4


def test_verify_tree_from_built_tree():
    """Chain the two EAGLE ops: verify on the links build_tree produced."""
    g = _gen(900)
    bs, topk, depth, n = 4, 2, 4, 7
    case = _build_tree_case(g, bs, topk, depth, n, mode=1)
    tree = run_ours(case)
    target = torch.randint(0, 2, (bs, n), generator=g)
    cand = torch.randint(0, 2, (bs, n), generator=g)
    args = {
        "predicts": torch.zeros(bs * n, dtype=INT),
        "accept_index": torch.full((bs, depth + 1), -1, dtype=INT),
        "accept_token_num": torch.zeros(bs, dtype=INT), "candidates": cand,
        "retrive_index": tree["retrive_index"],
        "retrive_next_token": tree["retrive_next_token"],
        "retrive_next_sibling": tree["retrive_next_sibling"], "target_predict": target,
    }
    got = run_ours({"op": "verify_greedy", "args": args})
    assert_same(got, cuda_verify_greedy(args), "verify-on-built-tree")


# --------------------------------------------------------------------------
# Edge cases that the kernels cannot be launched on (empty batches)
# --------------------------------------------------------------------------


def test_empty_batches_are_noops():
    table = torch.arange(20, dtype=INT).view(2, 10)
    e = torch.empty(0, dtype=LONG)
    out = torch.full((3,), -1, dtype=LONG)
    sgl_kernel.assign_req_to_token_pool_cpu(e, table, e, e, e, 10)
    sgl_kernel.assign_extend_cache_locs_cpu(e, table, e, e, out, 10)
    sgl_kernel.assign_draft_cache_locs_contiguous_cpu(e, table, e, out, 10, 2, 2)
    sgl_kernel.fill_bonus_tokens_cpu(torch.empty(0, 4, dtype=INT), e, e.int(), 4)
    sgl_kernel.fill_accept_out_cache_loc_cpu(torch.empty(0, 4, dtype=INT), e, out)
    sgl_kernel.copy_all_layer_kv_cache_cpu(torch.empty(0, dtype=torch.uint64), e, e, e)
    assert torch.equal(table, torch.arange(20, dtype=INT).view(2, 10))
    assert torch.equal(out, torch.full((3,), -1, dtype=LONG))
    z = torch.empty(0, 4, dtype=LONG)
    sgl_kernel.build_tree_kernel_efficient_cpu(
        z, torch.empty(0, 3, dtype=LONG), e, torch.empty(0, dtype=torch.bool), e,
        z, z, z, 2, 2, 4, 1,
    )
    sgl_kernel.verify_tree_greedy_cpu(
        predicts=e.int(), accept_index=torch.empty(0, 3, dtype=INT), accept_token_num=e.int(),
        candidates=z, retrive_index=z, retrive_next_token=z, retrive_next_sibling=z,
        target_predict=z,
    )
    reconstruct_indices_from_tree_mask(torch.empty(0, dtype=torch.bool), e, e, z, z, z, 0, 4)


def test_fill_accept_out_cache_loc_all_padding():
    out = torch.full((6,), 5, dtype=LONG)
    sgl_kernel.fill_accept_out_cache_loc_cpu(
        torch.full((2, 3), -1, dtype=INT), torch.arange(10), out
    )
    assert torch.equal(out, torch.full((6,), 5, dtype=LONG))


def test_kv_copy_reuses_views_and_handles_odd_rows():
    """Repeated calls on one pool (views are cached per buffer and must grow
    when later locations go further), and rows whose width or address only
    allows a narrower word than 8 bytes."""
    g = _gen(800)
    backing = torch.randint(0, 256, (64 * 7 + 1,), generator=g, dtype=torch.uint8)
    bufs = [
        torch.randn(64, 2, 4, generator=g),  # 32-byte rows
        backing[1:].view(64, 7),  # 7-byte rows at an odd address
        torch.randint(0, 100, (64, 3), generator=g, dtype=torch.int16),  # 6-byte rows
    ]
    want = [b.clone() for b in bufs]
    ptrs = torch.tensor([b.data_ptr() for b in bufs], dtype=torch.uint64)
    strides = torch.tensor([b.stride(0) * b.element_size() for b in bufs])
    for tgt, src in [([3, 1], [1, 2]), ([60, 5, 7], [2, 63, 60]), ([0], [62])]:
        tgt, src = torch.tensor(tgt), torch.tensor(src)
        sgl_kernel.copy_all_layer_kv_cache_cpu(ptrs, strides, tgt, src)
        for w in want:
            w[tgt] = w[src].clone()
        for b, w in zip(bufs, want):
            assert torch.equal(b, w)


def test_kv_copy_rejects_negative_locations():
    buf = torch.zeros(4, 8)
    ptrs = torch.tensor([buf.data_ptr()], dtype=torch.uint64)
    with pytest.raises(ValueError):
        sgl_kernel.copy_all_layer_kv_cache_cpu(
            ptrs, torch.tensor([32]), torch.tensor([-1]), torch.tensor([0])
        )


# --------------------------------------------------------------------------
# 2. The import hook
# --------------------------------------------------------------------------


def _python(code: str, env_extra=None, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("SGLANG_ARCTIC_DISABLE_CPU_KERNELS", None)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd,
        capture_output=True, text=True, timeout=120,
    )


def test_fresh_interpreter_gets_the_cpu_build():
    names = ", ".join(OP_NAMES)
    proc = _python(f"""
        import sgl_kernel
        from arctic_sgl_kernel import import_hook
        assert import_hook.using_fallback(), sgl_kernel.__file__
        assert import_hook.finder().real_import_error is not None
        from sgl_kernel import {names}
        from sgl_kernel.speculative import reconstruct_indices_from_tree_mask
        import torch
        assert not hasattr(torch.ops.sgl_kernel, "convert_weight_packed")
        print("OK", sgl_kernel.__file__)
    """, cwd=str(HERE.parent))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK" in proc.stdout and "arctic_sgl_kernel" in proc.stdout


def test_working_real_package_is_preferred(tmp_path):
    fake = tmp_path / "sgl_kernel"
    fake.mkdir()
    (fake / "__init__.py").write_text("REAL = True\n")
    (fake / "speculative.py").write_text("def reconstruct_indices_from_tree_mask(*a): pass\n")
    proc = _python(f"""
        import sgl_kernel, sgl_kernel.speculative
        from arctic_sgl_kernel import import_hook
        assert sgl_kernel.REAL, sgl_kernel.__file__
        assert sgl_kernel.__file__ == {str(fake / "__init__.py")!r}, sgl_kernel.__file__
        assert sgl_kernel.speculative.__file__.startswith({str(fake)!r})
        assert not import_hook.using_fallback()
        print("OK")
    """, env_extra={"PYTHONPATH": str(tmp_path)}, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK" in proc.stdout


def test_disable_switch_leaves_the_real_import_error():
    proc = _python("""
        try:
            import sgl_kernel
        except (ImportError, OSError) as exc:
            print("RAISED", type(exc).__name__)
        else:
            from arctic_sgl_kernel import import_hook
            print("IMPORTED", import_hook.using_fallback())
    """, env_extra={"SGLANG_ARCTIC_DISABLE_CPU_KERNELS": "1"}, cwd=str(HERE.parent))
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Either the CUDA wheel's own error, or (if a working build exists) that build.
    assert "RAISED" in proc.stdout or "IMPORTED False" in proc.stdout


# --------------------------------------------------------------------------
# 3. Against SGLang's Triton kernels / call sites / numpy reference
#    (last in the file: their subprocess runs while the tests above do)
# --------------------------------------------------------------------------

TRITON_CASES = [
    k for k, c in CASES.items() if not (c["op"] == "build_tree" and c["args"]["mode"] == 2)
]


@pytest.mark.parametrize("name", TRITON_CASES)
def test_op_matches_sglang_triton_kernel(name, sglang_results):
    assert_same(run_ours(CASES[name]), sglang_results[name]["ref"], name)


SITE_CASES = [  # SGLang's extend wrapper sizes its output for uniform rows only
    k for k, c in CASES.items()
    if not (c["op"] == "extend_cache_locs" and not c["args"]["uniform"])
]


@pytest.mark.parametrize("name", SITE_CASES)
def test_sglang_call_site_matches(name, sglang_results):
    """SGLang's own ``*_func`` wrapper, CPU engine on, routed into our op."""
    res = sglang_results[name]
    # The bit-packed tree mask has no Triton reference: use the CUDA port.
    want = res["ref"] or cuda_build_tree(CASES[name]["args"])
    assert_same(res["site"], want, name)


@pytest.mark.parametrize("name", [k for k, c in CASES.items() if c["op"] == "reconstruct"
                                  and c["args"]["is_tree"]])
def test_reconstruct_matches_derive_tree_links(name, sglang_results):
    ours = run_ours(CASES[name])
    ref = sglang_results[name]["ref"]
    assert torch.equal(ours["retrive_next_token"], ref["derived_next_token"])
    assert torch.equal(ours["retrive_next_sibling"], ref["derived_next_sibling"])
