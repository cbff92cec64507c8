"""The ``arctic`` CPU attention backend against a dense float64 reference.

The reference (``_dense_reference``) attends each request on its own, over
keys it looks up itself, with visibility it derives itself:
- causal extend: the query at absolute position ``p`` sees keys ``0..p``;
- decode: the new token sees all ``seq_len`` keys;
- verify: every draft sees the committed prefix, plus itself and its
  ancestors found by walking the parent links of a random tree.
GQA: query head ``h`` reads KV head ``h // (Hq // Hkv)``.

The backend runs through its real class with a minimal fake model runner,
KV pool and forward batch (plain objects with just the fields it reads), and
the plan layer is also checked directly for grouping and padding corner
cases. Everything is small and runs in a few seconds.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch

from sglang.srt.layers.radix_attention import AttentionType
from sglang.srt.model_executor.forward_batch_info import ForwardMode

from sglang_arctic.attention import BACKEND_NAME, register_attention_backend
from sglang_arctic.attention import plan as plan_mod
from sglang_arctic.attention.backend import ArcticCPUAttnBackend, create_arctic_backend
from sglang_arctic.attention.plan import (
    plan_decode,
    plan_extend,
    plan_verify,
    run_plan,
)

POOL = 4096  # KV slots (slot 0 is SGLang's reserved dummy slot)
CTX = 1024  # req_to_token row length
NUM_LAYERS = 2


# ---------------------------------------------------------------------------
# fakes: just the surface the backend touches
# ---------------------------------------------------------------------------


class FakeKVPool:
    """MHA token pool: per layer [POOL, Hkv, D] key and [POOL, Hkv, Dv] value."""

    def __init__(self, hkv, d, dv, dtype, gen):
        self.k = [torch.randn(POOL, hkv, d, generator=gen).to(dtype) for _ in range(NUM_LAYERS)]
        self.v = [torch.randn(POOL, hkv, dv, generator=gen).to(dtype) for _ in range(NUM_LAYERS)]
        self.writes = 0

    def get_key_buffer(self, layer_id):
        return self.k[layer_id]

    def get_value_buffer(self, layer_id):
        return self.v[layer_id]

    def set_kv_buffer(self, layer, loc_info, k, v):
        loc = loc_info.loc
        self.k[layer.layer_id][loc] = k.to(self.k[layer.layer_id].dtype)
        self.v[layer.layer_id][loc] = v.to(self.v[layer.layer_id].dtype)
        self.writes += 1


def make_layer(hq, hkv, d, dv, layer_id=0, attn_type=AttentionType.DECODER):
    return SimpleNamespace(
        tp_q_head_num=hq, tp_k_head_num=hkv, qk_head_dim=d, v_head_dim=dv,
        scaling=d ** -0.5, layer_id=layer_id, is_cross_attention=False,
        sliding_window_size=-1, logit_cap=0.0, attn_type=attn_type,
    )


class World:
    """A token pool with requests whose KV slots are scattered randomly."""

    def __init__(self, hq=9, hkv=3, d=64, dv=None, dtype=torch.float32, seed=0):
        self.gen = torch.Generator().manual_seed(seed)
        self.rng = random.Random(seed)
        self.hq, self.hkv, self.d, self.dv = hq, hkv, d, dv or d
        self.dtype = dtype
        self.pool = FakeKVPool(hkv, d, self.dv, dtype, self.gen)
        self.req_to_token = torch.zeros(64, CTX, dtype=torch.int32)
        self.free = list(range(1, POOL))
        self.rng.shuffle(self.free)
        self.runner = SimpleNamespace(
            device="cpu",
            req_to_token_pool=SimpleNamespace(req_to_token=self.req_to_token),
            token_to_kv_pool=self.pool,
        )

    def alloc(self, pool_row, start, n):
        slots = [self.free.pop() for _ in range(n)]
        self.req_to_token[pool_row, start : start + n] = torch.tensor(slots, dtype=torch.int32)
        return torch.tensor(slots, dtype=torch.int64)

    def rand(self, *shape):
        return torch.randn(*shape, generator=self.gen).to(self.dtype)


def dense_reference(world, layer_id, pool_row, q, visible, scale):
    """q: [S, Hq, D]; visible: [S, L] bool over the request's first L tokens."""
    S, L = visible.shape
    slots = world.req_to_token[pool_row, :L].long()
    k = world.pool.k[layer_id][slots].double()  # [L, Hkv, D]
    v = world.pool.v[layer_id][slots].double()
    g = world.hq // world.hkv
    kv_head = torch.arange(world.hq) // g
    k, v = k[:, kv_head], v[:, kv_head]  # [L, Hq, *]
    s = torch.einsum("shd,lhd->hsl", q.double(), k) * scale
    s = s.masked_fill(~visible.unsqueeze(0), float("-inf"))
    return torch.einsum("hsl,lhd->shd", s.softmax(-1), v)


def causal_visibility(prefix, extend):
    vis = torch.zeros(extend, prefix + extend, dtype=torch.bool)
    for i in range(extend):
        vis[i, : prefix + i + 1] = True
    return vis


def random_tree(rng, n):
    """parent[i] < i for i > 0; node 0 is the root (the last committed token)."""
    return [-1] + [rng.randrange(0, i) for i in range(1, n)]


def tree_visibility(parents, prefix):
    n = len(parents)
    vis = torch.zeros(n, prefix + n, dtype=torch.bool)
    vis[:, :prefix] = True
    for i in range(n):
        j = i
        while j >= 0:
            vis[i, prefix + j] = True
            j = parents[j]
    return vis


def tol(dtype):
    return {torch.float32: 2e-5, torch.bfloat16: 3e-2}[dtype]


# ---------------------------------------------------------------------------
# the backend class, end to end through forward()
# ---------------------------------------------------------------------------


def make_batch(mode, world, pool_rows, seq_lens, out_cache_loc, **extra):
    return SimpleNamespace(
        forward_mode=mode,
        batch_size=len(pool_rows),
        req_pool_indices=torch.tensor(pool_rows, dtype=torch.int64),
        seq_lens=torch.tensor(seq_lens, dtype=torch.int64),
        seq_lens_cpu=torch.tensor(seq_lens, dtype=torch.int64),
        out_cache_loc=out_cache_loc,
        spec_info=extra.pop("spec_info", None),
        extend_prefix_lens=None, extend_seq_lens=None,
        extend_prefix_lens_cpu=extra.pop("prefix", None),
        extend_seq_lens_cpu=extra.pop("extend", None),
        encoder_lens=None,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("heads", [(9, 3), (4, 4)])
def test_extend_with_prefix_cache_and_chunks(dtype, heads):
    """Mixed batch: fresh prompts (no prefix), prefix-cache hits, a chunked
    prefill continuation, short and long extends; then one decode step."""
    hq, hkv = heads
    w = World(hq=hq, hkv=hkv, dtype=dtype, seed=1)
    backend = create_arctic_backend(w.runner)
    assert isinstance(backend, ArcticCPUAttnBackend)
    # (prefix, extend): long/no prefix, short/prefix, long/prefix, tiny, chunk
    reqs = [(0, 150), (37, 5), (90, 120), (0, 1), (200, 64), (3, 65)]
    rows = [5, 2, 9, 0, 7, 11]
    locs, seqs = [], []
    for (p, e), r in zip(reqs, rows):
        w.alloc(r, 0, p)  # cached prefix already in the pool
        locs.append(w.alloc(r, p, e))
        seqs.append(p + e)
    T = sum(e for _, e in reqs)
    q = w.rand(T, hq * w.d)
    k_new, v_new = w.rand(T, hkv, w.d), w.rand(T, hkv, w.dv)
    fb = make_batch(ForwardMode.EXTEND, w, rows, seqs, torch.cat(locs),
                    prefix=[p for p, _ in reqs], extend=[e for _, e in reqs])
    backend.init_forward_metadata(fb)
    layer = make_layer(hq, hkv, w.d, w.dv, layer_id=1)
    out = backend.forward(q, k_new, v_new, layer, fb)
    assert out.shape == (T, hq * w.dv) and out.dtype == dtype
    start = 0
    for (p, e), r in zip(reqs, rows):
        ref = dense_reference(w, 1, r, q[start : start + e].view(e, hq, w.d),
                              causal_visibility(p, e), layer.scaling)
        got = out[start : start + e].view(e, hq, w.dv).double()
        torch.testing.assert_close(got, ref, atol=tol(dtype), rtol=tol(dtype))
        start += e

    # one decode step for every request
    dlocs = [w.alloc(r, s, 1) for r, s in zip(rows, seqs)]
    seqs = [s + 1 for s in seqs]
    q = w.rand(len(rows), hq * w.d)
    fb = make_batch(ForwardMode.DECODE, w, rows, seqs, torch.cat(dlocs))
    backend.init_forward_metadata(fb)
    out = backend.forward(q, w.rand(len(rows), hkv, w.d), w.rand(len(rows), hkv, w.dv), layer, fb)
    for i, (r, s) in enumerate(zip(rows, seqs)):
        vis = torch.ones(1, s, dtype=torch.bool)
        ref = dense_reference(w, 1, r, q[i].view(1, hq, w.d), vis, layer.scaling)
        torch.testing.assert_close(out[i].view(1, hq, w.dv).double(), ref,
                                   atol=tol(dtype), rtol=tol(dtype))


@pytest.mark.parametrize("layout", ["qlen_only", "full_mask", "chain"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_target_verify_tree_mask(layout, dtype):
    """TARGET_VERIFY: n drafts per request after seq_len committed tokens,
    each draft seeing the prefix plus its tree ancestors and itself."""
    w = World(dtype=dtype, seed=2)
    backend = create_arctic_backend(w.runner)
    n = 8
    rows, seqs = [3, 1, 6, 4], [40, 7, 300, 41]
    trees = [random_tree(w.rng, n) for _ in rows]
    if layout == "chain":
        trees = [[i - 1 for i in range(n)] for _ in rows]
    locs = []
    for r, s in zip(rows, seqs):
        w.alloc(r, 0, s)
        locs.append(w.alloc(r, s, n))  # the drafts' slots (assign_extend_cache_locs)
    # SGLang's mask layouts, built from the trees
    drafts_only = torch.stack([tree_visibility(t, 0) for t in trees])  # [bs, n, n]
    if layout == "full_mask":
        custom = torch.cat([tree_visibility(t, s).reshape(-1) for t, s in zip(trees, seqs)])
        custom = torch.cat([custom, torch.ones(17, dtype=torch.bool)])  # graph padding
        topk = 4
    elif layout == "qlen_only":
        custom, topk = drafts_only.reshape(-1), -1
    else:
        custom, topk = None, 1
    spec = SimpleNamespace(draft_token_num=n, custom_mask=custom, tree_topk=topk)
    T = len(rows) * n
    q = w.rand(T, w.hq * w.d)
    fb = make_batch(ForwardMode.TARGET_VERIFY, w, rows, seqs, torch.cat(locs), spec_info=spec)
    backend.init_forward_metadata(fb)
    layer = make_layer(w.hq, w.hkv, w.d, w.dv)
    out = backend.forward(q, w.rand(T, w.hkv, w.d), w.rand(T, w.hkv, w.dv), layer, fb)
    for i, (r, s) in enumerate(zip(rows, seqs)):
        ref = dense_reference(w, 0, r, q[i * n : (i + 1) * n].view(n, w.hq, w.d),
                              tree_visibility(trees[i], s), layer.scaling)
        torch.testing.assert_close(out[i * n : (i + 1) * n].view(n, w.hq, w.dv).double(), ref,
                                   atol=tol(dtype), rtol=tol(dtype))


def test_kv_written_once_per_layer_and_not_when_told():
    w = World(seed=3)
    backend = create_arctic_backend(w.runner)
    loc = w.alloc(0, 0, 4)
    fb = make_batch(ForwardMode.EXTEND, w, [0], [4], loc, prefix=[0], extend=[4])
    backend.init_forward_metadata(fb)
    k = w.rand(4, w.hkv, w.d)
    backend.forward(w.rand(4, w.hq * w.d), k, w.rand(4, w.hkv, w.d), make_layer(9, 3, 64, 64), fb)
    assert w.pool.writes == 1
    torch.testing.assert_close(w.pool.k[0][loc], k)
    backend.forward(w.rand(4, w.hq * w.d), k, k, make_layer(9, 3, 64, 64), fb, save_kv_cache=False)
    assert w.pool.writes == 1


def test_non_causal_layer_sees_everything():
    w = World(seed=4)
    backend = create_arctic_backend(w.runner)
    loc = w.alloc(2, 0, 70)
    fb = make_batch(ForwardMode.EXTEND, w, [2], [70], loc, prefix=[0], extend=[70])
    backend.init_forward_metadata(fb)
    layer = make_layer(9, 3, 64, 64, attn_type=AttentionType.ENCODER_ONLY)
    q = w.rand(70, 9 * 64)
    out = backend.forward(q, w.rand(70, 3, 64), w.rand(70, 3, 64), layer, fb)
    ref = dense_reference(w, 0, 2, q.view(70, 9, 64), torch.ones(70, 70, dtype=torch.bool), layer.scaling)
    torch.testing.assert_close(out.view(70, 9, 64).double(), ref, atol=2e-5, rtol=2e-5)


def test_unsupported_layers_fail_loudly():
    w = World(seed=5)
    backend = create_arctic_backend(w.runner)
    loc = w.alloc(0, 0, 2)
    fb = make_batch(ForwardMode.EXTEND, w, [0], [2], loc, prefix=[0], extend=[2])
    backend.init_forward_metadata(fb)
    layer = make_layer(9, 3, 64, 64)
    layer.sliding_window_size = 16
    with pytest.raises(NotImplementedError, match="sliding-window"):
        backend.forward(w.rand(2, 9 * 64), w.rand(2, 3, 64), w.rand(2, 3, 64), layer, fb)


# ---------------------------------------------------------------------------
# the plan layer: grouping and padding corner cases, different V head dim
# ---------------------------------------------------------------------------


def test_decode_groups_by_length_and_scatters_back(monkeypatch):
    """Very different context lengths split into several padded groups whose
    requests are not adjacent in the batch; the results land in the right rows."""
    monkeypatch.setattr(plan_mod, "PAD_FREE_KEYS", 0)
    w = World(dv=32, seed=6)
    rows = [0, 1, 2, 3, 4, 5, 6]
    seqs = [700, 3, 650, 20, 5, 690, 1]
    for r, s in zip(rows, seqs):
        w.alloc(r, 0, s)
    plan = plan_decode(w.req_to_token, torch.tensor(rows), seqs)
    assert len(plan.groups) >= 2
    assert any(g.q_rows is not None for g in plan.groups)
    q = w.rand(len(rows), w.hq, w.d)
    out = torch.empty(len(rows), w.hq, w.dv)
    run_plan(plan, q, w.pool.k[0], w.pool.v[0], out, 0.125, plan_mod.Workspace())
    for i, (r, s) in enumerate(zip(rows, seqs)):
        ref = dense_reference(w, 0, r, q[i : i + 1], torch.ones(1, s, dtype=torch.bool), 0.125)
        torch.testing.assert_close(out[i : i + 1].double(), ref, atol=2e-5, rtol=2e-5)


def test_short_extends_pad_queries_and_keys():
    """Short extends of different lengths share one padded group (padding on
    both the query and the key axis, explicit bottom-right causal masks)."""
    w = World(seed=7)
    reqs = [(10, 3), (0, 17), (250, 1), (5, 64)]
    rows = [4, 8, 1, 2]
    for (p, e), r in zip(reqs, rows):
        w.alloc(r, 0, p + e)
    plan = plan_extend(w.req_to_token, torch.tensor(rows), [p for p, _ in reqs], [e for _, e in reqs])
    assert len(plan.groups) == 1 and plan.groups[0].mask is not None
    T = sum(e for _, e in reqs)
    q = w.rand(T, w.hq, w.d)
    out = torch.full((T, w.hq, w.d), float("nan"))
    run_plan(plan, q, w.pool.k[0], w.pool.v[0], out, 0.125)
    start = 0
    for (p, e), r in zip(reqs, rows):
        ref = dense_reference(w, 0, r, q[start : start + e], causal_visibility(p, e), 0.125)
        torch.testing.assert_close(out[start : start + e].double(), ref, atol=2e-5, rtol=2e-5)
        start += e


def test_long_extend_after_prefix_runs_in_query_blocks(monkeypatch):
    """A later prefill chunk (cached prefix, many new tokens) in several query
    blocks, the last one partial; a fresh long prompt beside it (is_causal)."""
    monkeypatch.setattr(plan_mod, "QUERY_BLOCK", 48)
    w = World(hq=6, hkv=2, dtype=torch.float32, seed=10)
    reqs, rows = [(300, 130), (0, 100)], [3, 5]
    for (p, e), r in zip(reqs, rows):
        w.alloc(r, 0, p + e)
    plan = plan_extend(w.req_to_token, torch.tensor(rows), [p for p, _ in reqs], [e for _, e in reqs])
    assert [g.causal_prefix for g in plan.groups] == [300, None]
    assert [g.is_causal for g in plan.groups] == [False, True]
    T = sum(e for _, e in reqs)
    q = w.rand(T, w.hq, w.d)
    out = torch.full((T, w.hq, w.d), float("nan"))
    run_plan(plan, q, w.pool.k[0], w.pool.v[0], out, 0.125, plan_mod.Workspace())
    start = 0
    for (p, e), r in zip(reqs, rows):
        ref = dense_reference(w, 0, r, q[start : start + e], causal_visibility(p, e), 0.125)
        torch.testing.assert_close(out[start : start + e].double(), ref, atol=2e-5, rtol=2e-5)
        start += e


def test_verify_rejects_a_mask_of_the_wrong_size():
    w = World(seed=8)
    w.alloc(0, 0, 12)
    with pytest.raises(ValueError, match="custom_mask"):
        plan_verify(w.req_to_token, torch.tensor([0]), [4], 8, torch.ones(10, dtype=torch.bool))


# ---------------------------------------------------------------------------
# registration
# ---------------------------------------------------------------------------


def test_registration_is_idempotent():
    from sglang.srt.arg_groups.choices import ATTENTION_BACKEND_CHOICES
    from sglang.srt.layers.attention.attention_registry import ATTENTION_BACKENDS

    register_attention_backend()
    factory = ATTENTION_BACKENDS[BACKEND_NAME]
    register_attention_backend()
    assert ATTENTION_BACKENDS[BACKEND_NAME] is factory
    assert ATTENTION_BACKEND_CHOICES.count(BACKEND_NAME) == 1
    w = World(seed=9)
    assert isinstance(factory(w.runner), ArcticCPUAttnBackend)
