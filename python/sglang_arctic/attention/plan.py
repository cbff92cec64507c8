"""Attention plans: how one forward pass maps onto a few batched SDPA calls.

Everything here is plain torch and independent of SGLang's objects, so it can
be tested against a dense reference directly.

A forward pass (one scheduler batch) is split into *groups*. Each group is one
``scaled_dot_product_attention`` call per layer over a padded batch:

    queries  [B, S, Hq, D]      S  = most query tokens of a request in the group
    keys     [B, Lm, Hkv, D]    Lm = longest KV context in the group, gathered
                                from the token pool through ``kv_index``
    mask     [B, S, Lm] bool    True = may attend; also hides the padding

GQA is handled by *folding* the G = Hq / Hkv query heads that share a KV head
into the query axis: queries become ``[B, Hkv, G * S, D]`` (row ``g * S + s``),
so SDPA runs with Hkv heads and never repeats K/V. The mask rows are repeated G
times to match (for S == 1 the mask simply broadcasts).

Plans are built once per forward (``init_forward_metadata``) and reused by all
layers; the gathers of K/V go into workspace buffers that are reused too.

Group kinds:
  * padded (decode, target-verify, short extends): masked SDPA as above.
  * one long extend request: SDPA over that request alone, GQA inside SDPA.
    With no cached prefix it uses ``is_causal`` (the kernel skips the upper
    triangle). With a cached prefix (prefix-cache hit, later prefill chunks)
    the queries run in blocks of ``QUERY_BLOCK`` rows, each over only the keys
    up to its last row with a bottom-right causal mask, so the masked upper
    part is neither computed nor materialized as one [S, L] mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch.nn.functional import scaled_dot_product_attention as _sdpa

# Extend requests with at most this many new tokens are batched into padded
# groups (explicit masks); longer ones run alone so the causal kernel can skip
# the masked half of the score matrix.
SHORT_EXTEND_TOKENS = 64

# Query rows per SDPA call for a long extend with a cached prefix.
QUERY_BLOCK = 512

# Grouping by KV length: a request joins the current group while the padded
# key count of the group stays within this factor of its real key count.
PAD_SLACK = 1.5
# ... unless the group is this small in absolute terms (padding is then cheap
# compared with the per-call overhead of another group).
PAD_FREE_KEYS = 4096


@dataclass
class Group:
    """One SDPA call per layer. See the module docstring."""

    B: int
    S: int
    Lm: int
    # Pool slots to gather, [B * Lm] int64 (padding points at slot 0, SGLang's
    # reserved dummy slot, and is masked out).
    kv_index: torch.Tensor
    # Rows of the flat query tensor that make up the padded [B * S] batch;
    # None when they are exactly rows [row0, row0 + B * S) in order.
    q_rows: Optional[torch.Tensor]
    row0: int
    # Output rows: for each real (non-padding) padded row, where it goes.
    # None when the padded batch has no padding rows and q_rows is None.
    src_rows: Optional[torch.Tensor] = None  # indices into the B * S padded rows
    dst_rows: Optional[torch.Tensor] = None  # indices into the flat output
    # [B, S, Lm] visibility; None = everything visible (no padding at all).
    mask: Optional[torch.Tensor] = None
    # Single-request causal group without a prefix: use SDPA's is_causal.
    is_causal: bool = False
    # Single-request group, bottom-right causal after this many cached tokens
    # (run in query blocks, masks built per block).
    causal_prefix: Optional[int] = None
    # Caches of the SDPA-ready additive mask, keyed by (G, dtype).
    _mask_cache: Dict[Tuple[int, torch.dtype], torch.Tensor] = field(
        default_factory=dict, repr=False
    )

    def sdpa_mask(self, G: int, dtype: torch.dtype, fold: bool) -> Optional[torch.Tensor]:
        if self.mask is None:
            return None
        key = (G if fold else 0, dtype)
        cached = self._mask_cache.get(key)
        if cached is not None:
            return cached
        m = self.mask  # [B, S, Lm]
        if fold and self.S > 1 and G > 1:
            # row g * S + s of the folded queries uses mask row s
            m = m.unsqueeze(1).expand(self.B, G, self.S, self.Lm)
            m = m.reshape(self.B, G * self.S, self.Lm)
        m = m.unsqueeze(1)  # broadcast over the (KV or query) heads
        out = torch.zeros(m.shape, dtype=dtype, device=m.device)
        out.masked_fill_(~m, float("-inf"))
        self._mask_cache[key] = out
        return out


@dataclass
class Plan:
    groups: List[Group]
    num_tokens: int  # query rows of the forward


# ---------------------------------------------------------------------------
# plan construction
# ---------------------------------------------------------------------------


def _group_by_length(order: Sequence[int], kv_lens: Sequence[int]) -> List[List[int]]:
    """Split requests (sorted by descending KV length) into groups whose padding
    stays bounded. Returns lists of request ids, each sorted ascending."""
    groups: List[List[int]] = []
    cur: List[int] = []
    cur_max = 0
    cur_sum = 0
    for r in order:
        L = kv_lens[r]
        if cur:
            padded = (len(cur) + 1) * cur_max
            real = cur_sum + L
            if padded > PAD_SLACK * real and padded > PAD_FREE_KEYS:
                groups.append(sorted(cur))
                cur, cur_sum = [], 0
        if not cur:
            cur_max = L
        cur.append(r)
        cur_sum += L
    if cur:
        groups.append(sorted(cur))
    return groups


def _gather_index(
    req_to_token: torch.Tensor,
    pool_rows: torch.Tensor,
    kv_lens: torch.Tensor,
    Lm: int,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """[B * Lm] pool slots (0 for padding) and the [B, Lm] validity."""
    device = req_to_token.device
    valid = torch.arange(Lm, device=device).unsqueeze(0) < kv_lens.unsqueeze(1)
    rows = req_to_token[:, :Lm].index_select(0, pool_rows).to(torch.int64)
    rows = rows.masked_fill(~valid, 0)
    return rows.reshape(-1), valid


def _padded_group(
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor,
    members: List[int],
    q_starts: Sequence[int],
    q_lens: Sequence[int],
    kv_lens: Sequence[int],
    query_mask_fn,
) -> Group:
    """Build one padded group.

    ``query_mask_fn(r, S_r, L_r)`` returns the [S_r, L_r] bool mask of request r,
    or None when request r sees all of its L_r keys from every query row.
    """
    device = req_to_token.device
    B = len(members)
    S = max(q_lens[r] for r in members)
    Lm = max(kv_lens[r] for r in members)
    sel = torch.tensor(members, dtype=torch.int64, device=device)
    lens_t = torch.tensor([kv_lens[r] for r in members], dtype=torch.int64, device=device)
    kv_index, valid = _gather_index(
        req_to_token, req_pool_indices.index_select(0, sel).to(torch.int64), lens_t, Lm
    )

    uniform_q = all(q_lens[r] == S for r in members)
    contiguous = uniform_q and all(
        q_starts[members[i]] == q_starts[members[0]] + i * S for i in range(B)
    )
    uniform_kv = all(kv_lens[r] == Lm for r in members)

    per_req_masks = [query_mask_fn(r, q_lens[r], kv_lens[r]) for r in members]
    need_mask = (not uniform_kv) or (not uniform_q) or any(
        m is not None for m in per_req_masks
    )
    mask = None
    if need_mask and uniform_q and all(m is None for m in per_req_masks):
        mask = valid.unsqueeze(1).expand(B, S, Lm)  # only key padding
    elif need_mask:
        mask = torch.zeros((B, S, Lm), dtype=torch.bool, device=device)
        for i, r in enumerate(members):
            m = per_req_masks[i]
            if m is None:
                mask[i, : q_lens[r], : kv_lens[r]] = True
            else:
                mask[i, : q_lens[r], : kv_lens[r]] = m
            if q_lens[r] < S:
                # padding query rows: give them one visible key so no row is
                # fully masked (their output is dropped)
                mask[i, q_lens[r] :, 0] = True

    if contiguous:
        return Group(B=B, S=S, Lm=Lm, kv_index=kv_index, q_rows=None,
                     row0=q_starts[members[0]], mask=mask)

    q_rows = torch.zeros((B, S), dtype=torch.int64)
    src, dst = [], []
    for i, r in enumerate(members):
        n = q_lens[r]
        q_rows[i, :n] = torch.arange(q_starts[r], q_starts[r] + n)
        src.extend(range(i * S, i * S + n))
        dst.extend(range(q_starts[r], q_starts[r] + n))
    return Group(
        B=B, S=S, Lm=Lm, kv_index=kv_index,
        q_rows=q_rows.reshape(-1).to(device), row0=0,
        src_rows=torch.tensor(src, dtype=torch.int64, device=device),
        dst_rows=torch.tensor(dst, dtype=torch.int64, device=device),
        mask=mask,
    )


def causal_mask(q_len: int, kv_len: int, device=None) -> torch.Tensor:
    """[q_len, kv_len]: query i (at position kv_len - q_len + i) sees keys <= it."""
    offset = kv_len - q_len
    rows = torch.arange(q_len, device=device).unsqueeze(1) + offset
    return torch.arange(kv_len, device=device).unsqueeze(0) <= rows


def plan_decode(
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor,
    seq_lens: Sequence[int],
) -> Plan:
    """One query token per request; request r sees its seq_lens[r] keys (the
    new token's KV is already in the pool)."""
    bs = len(seq_lens)
    order = sorted(range(bs), key=lambda r: -seq_lens[r])
    groups = [
        _padded_group(
            req_to_token, req_pool_indices, members,
            q_starts=list(range(bs)), q_lens=[1] * bs, kv_lens=seq_lens,
            query_mask_fn=lambda r, s, l: None,
        )
        for members in _group_by_length(order, seq_lens)
    ]
    return Plan(groups=groups, num_tokens=bs)


def plan_extend(
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor,
    prefix_lens: Sequence[int],
    extend_lens: Sequence[int],
    causal: bool = True,
) -> Plan:
    """Request r has prefix_lens[r] cached tokens and extend_lens[r] new ones
    (KV already written); its queries are the new tokens, causally masked."""
    bs = len(extend_lens)
    kv_lens = [p + e for p, e in zip(prefix_lens, extend_lens)]
    q_starts, acc = [], 0
    for e in extend_lens:
        q_starts.append(acc)
        acc += e
    device = req_to_token.device

    def qmask(r, s, l):
        if not causal or s == 1:
            return None  # one query at the end sees every key
        return causal_mask(s, l, device)

    groups: List[Group] = []
    short = [r for r in range(bs) if extend_lens[r] <= SHORT_EXTEND_TOKENS and extend_lens[r] > 0]
    long_ = [r for r in range(bs) if extend_lens[r] > SHORT_EXTEND_TOKENS]
    if short:
        order = sorted(short, key=lambda r: -kv_lens[r])
        for members in _group_by_length(order, kv_lens):
            groups.append(
                _padded_group(req_to_token, req_pool_indices, members,
                              q_starts, extend_lens, kv_lens, qmask)
            )
    for r in long_:
        L, S = kv_lens[r], extend_lens[r]
        kv_index, _ = _gather_index(
            req_to_token,
            req_pool_indices[r : r + 1].to(torch.int64),
            torch.tensor([L], dtype=torch.int64, device=device),
            L,
        )
        groups.append(
            Group(B=1, S=S, Lm=L, kv_index=kv_index, q_rows=None, row0=q_starts[r],
                  is_causal=causal and prefix_lens[r] == 0,
                  causal_prefix=prefix_lens[r] if causal and prefix_lens[r] > 0 else None)
        )
    return Plan(groups=groups, num_tokens=acc)


def tree_masks_from_custom_mask(
    custom_mask: torch.Tensor, seq_lens: Sequence[int], num_draft: int
) -> List[torch.Tensor]:
    """Per request, the [num_draft, seq_len + num_draft] visibility of the draft
    tokens, from SGLang's verify ``custom_mask`` in either layout:

    * QLEN_ONLY (SGLang's CPU layout): ``bs * n * n`` cells, ``[b, i, j]`` True
      when draft j is an ancestor of (or is) draft i; the committed prefix is
      implicitly visible.
    * FULL_MASK (the GPU layout): per request ``n * (seq_len + n)`` cells, row
      major, concatenated over requests (possibly padded at the end).

    The diagonal is forced visible: a token always attends to itself.
    """
    bs, n = len(seq_lens), num_draft
    flat = custom_mask.reshape(-1).to(torch.bool)
    eye = torch.eye(n, dtype=torch.bool, device=flat.device)
    out = []
    if flat.numel() == bs * n * n:
        tree = flat.view(bs, n, n)
        for r in range(bs):
            m = torch.ones((n, seq_lens[r] + n), dtype=torch.bool, device=flat.device)
            m[:, seq_lens[r] :] = tree[r] | eye
            out.append(m)
        return out
    need = sum(n * (s + n) for s in seq_lens)
    if flat.numel() < need:
        raise ValueError(
            f"verify custom_mask has {flat.numel()} cells; expected {bs * n * n} "
            f"(QLEN_ONLY) or at least {need} (FULL_MASK) for seq_lens={list(seq_lens)}, "
            f"num_draft={n}"
        )
    off = 0
    for r in range(bs):
        L = seq_lens[r] + n
        m = flat[off : off + n * L].view(n, L).clone()
        m[:, seq_lens[r] :] |= eye
        out.append(m)
        off += n * L
    return out


def plan_verify(
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor,
    seq_lens: Sequence[int],
    num_draft: int,
    custom_mask: Optional[torch.Tensor],
) -> Plan:
    """TARGET_VERIFY: request r has seq_lens[r] committed tokens and num_draft
    draft tokens (KV already written at req_to_token[r, seq_len:seq_len+n]).
    Without a custom mask the drafts form a chain (causal)."""
    bs, n = len(seq_lens), num_draft
    kv_lens = [s + n for s in seq_lens]
    device = req_to_token.device
    if custom_mask is not None:
        trees = tree_masks_from_custom_mask(custom_mask, seq_lens, n)
        qmask = lambda r, s, l: trees[r]  # noqa: E731
    else:
        qmask = lambda r, s, l: causal_mask(s, l, device)  # noqa: E731
    order = sorted(range(bs), key=lambda r: -kv_lens[r])
    q_starts = [r * n for r in range(bs)]
    groups = [
        _padded_group(req_to_token, req_pool_indices, members,
                      q_starts, [n] * bs, kv_lens, qmask)
        for members in _group_by_length(order, kv_lens)
    ]
    return Plan(groups=groups, num_tokens=bs * n)


# ---------------------------------------------------------------------------
# execution
# ---------------------------------------------------------------------------


class Workspace:
    """Grow-only gather buffers, reused across layers and forwards (avoids
    re-faulting fresh pages for every large K/V gather)."""

    def __init__(self):
        self._bufs: Dict[Tuple[str, torch.dtype, torch.device], torch.Tensor] = {}

    def get(self, name: str, shape: Tuple[int, ...], dtype, device) -> torch.Tensor:
        numel = 1
        for d in shape:
            numel *= d
        key = (name, dtype, torch.device(device))
        buf = self._bufs.get(key)
        if buf is None or buf.numel() < numel:
            buf = torch.empty(max(numel, 1), dtype=dtype, device=device)
            self._bufs[key] = buf
        return buf[:numel].view(shape)


def run_plan(
    plan: Plan,
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    out: torch.Tensor,
    scale: Optional[float],
    workspace: Optional[Workspace] = None,
) -> torch.Tensor:
    """Attention for every query row of ``plan``.

    q: [T, Hq, D]; k_cache: [P, Hkv, D]; v_cache: [P, Hkv, Dv];
    out: [T, Hq, Dv] (written in place and returned). Computes in q's dtype.
    """
    T, Hq, D = q.shape
    Hkv, Dv = k_cache.shape[1], v_cache.shape[2]
    G = Hq // Hkv
    dtype = q.dtype
    for g in plan.groups:
        n_kv = g.B * g.Lm
        if workspace is not None:
            kb = workspace.get("k", (n_kv, Hkv, D), k_cache.dtype, k_cache.device)
            vb = workspace.get("v", (n_kv, Hkv, Dv), v_cache.dtype, v_cache.device)
            torch.index_select(k_cache, 0, g.kv_index, out=kb)
            torch.index_select(v_cache, 0, g.kv_index, out=vb)
        else:
            kb = k_cache.index_select(0, g.kv_index)
            vb = v_cache.index_select(0, g.kv_index)
        if kb.dtype != dtype:
            kb, vb = kb.to(dtype), vb.to(dtype)
        k = kb.view(g.B, g.Lm, Hkv, D).transpose(1, 2)  # [B, Hkv, Lm, D]
        v = vb.view(g.B, g.Lm, Hkv, Dv).transpose(1, 2)

        if g.q_rows is None:
            qg = q[g.row0 : g.row0 + g.B * g.S]
        else:
            qg = q.index_select(0, g.q_rows)
        qg = qg.view(g.B, g.S, Hq, D)

        if g.is_causal:
            # one request, no prefix: top-left causal == bottom-right causal
            o = _sdpa(qg.transpose(1, 2), k, v, is_causal=True, scale=scale,
                      enable_gqa=G > 1)  # [1, Hq, S, Dv]
            o = o.transpose(1, 2).reshape(g.S, Hq, Dv)
        elif g.causal_prefix is not None:
            # one request after a cached prefix: query blocks, each over the
            # keys up to its last row
            qh = qg.transpose(1, 2)  # [1, Hq, S, D]
            o = torch.empty((g.S, Hq, Dv), dtype=dtype, device=q.device)
            for i0 in range(0, g.S, QUERY_BLOCK):
                i1 = min(g.S, i0 + QUERY_BLOCK)
                L = g.causal_prefix + i1
                m = causal_mask(i1 - i0, L, q.device)
                ob = _sdpa(qh[:, :, i0:i1], k[:, :, :L], v[:, :, :L], attn_mask=m,
                           scale=scale, enable_gqa=G > 1)
                o[i0:i1] = ob[0].transpose(0, 1)
        elif g.B == 1 and g.S > SHORT_EXTEND_TOKENS:
            # one long request, everything visible (non-causal layers)
            o = _sdpa(qg.transpose(1, 2), k, v, attn_mask=g.sdpa_mask(G, dtype, fold=False),
                      scale=scale, enable_gqa=G > 1)
            o = o.transpose(1, 2).reshape(g.S, Hq, Dv)
        else:
            # fold the G query heads of each KV head into the query axis
            if g.S == 1:
                qf = qg.view(g.B, Hkv, G, D)
            else:
                qf = (
                    qg.view(g.B, g.S, Hkv, G, D)
                    .permute(0, 2, 3, 1, 4)
                    .reshape(g.B, Hkv, G * g.S, D)
                )
            o = _sdpa(qf, k, v, attn_mask=g.sdpa_mask(G, dtype, fold=True), scale=scale)
            if g.S == 1:
                o = o.reshape(g.B, Hq, Dv)
            else:
                o = (
                    o.view(g.B, Hkv, G, g.S, Dv)
                    .permute(0, 3, 1, 2, 4)
                    .reshape(g.B * g.S, Hq, Dv)
                )

        if g.dst_rows is None:
            out[g.row0 : g.row0 + g.B * g.S] = o.reshape(g.B * g.S, Hq, Dv)
        else:
            out.index_copy_(0, g.dst_rows, o.reshape(g.B * g.S, Hq, Dv).index_select(0, g.src_rows))
    return out
