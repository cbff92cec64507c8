"""Draft-tree ops of the CPU ``sgl_kernel``: build, verify, reconstruct.

Trees are per request, ``n = draft_token_num`` nodes, node 0 the root (the
last verified token). Link arrays are ``[bs, n]`` int64, ``-1`` = none:
``retrive_index[b, i] = b * n + i`` (the node's flat row in the verify batch),
``retrive_next_token[b, i]`` = first child of ``i``, ``retrive_next_sibling[b, i]``
= next child of ``i``'s parent (children in increasing node order).

``build_tree_kernel_efficient_cpu(parent_list, selected_index, verified_seq_len,
tree_mask, positions, retrive_index, retrive_next_token, retrive_next_sibling,
topk, depth, draft_token_num, tree_mask_mode)``
    EAGLE tree from the draft's top-k expansion. ``selected_index[b, i-1]`` is
    node ``i``'s flat index in the draft's score list; its parent is the root
    when ``selected_index // topk == 0``, else the node whose selected index
    equals ``parent_list[b, selected_index // topk]`` (first match; a token
    whose parent was not selected gets no links and its path stops there).
    Writes ``positions[b*n + i] = verified_seq_len[b] + depth(i)``, all of
    ``retrive_index``, the links (callers pre-fill them with ``-1``; a node's
    first-child slot is only written when it has children), and the mask rows:
    row ``i`` is true at the root column and at every node on ``i``'s path
    (itself included). Mask layouts, as raw bytes of ``tree_mask`` (1-D,
    contiguous, any dtype):
    FULL_MASK (0): request ``b``'s ``n`` rows are ``seq_len_b + n`` wide, laid
    out one request after another; only the last ``n`` columns of each row
    are written (the prefix columns are the caller's, normally pre-filled
    true). QLEN_ONLY (1): ``n x n`` bytes per request. QLEN_ONLY_BITPACKING
    (2): one little-endian ``1/2/4``-byte word per row (``n <= 8/16/32``), bit
    ``j`` = column ``j``; the first byte is overwritten, the others OR-ed
    into (callers zero the buffer).
    Matches the CUDA kernels ``build_tree_efficient`` /
    ``build_tree_efficient_partial_packed``
    (``sglang/kernels/jit/include/sgl_kernel/speculative/eagle.cuh``) and the
    Triton port ``sgl_build_tree_kernel_efficient_triton``
    (``sglang/kernels/ops/speculative/spec_tree.py``); where the CUDA kernel
    reads out of bounds on an invalid tree, this follows the Triton port (it
    stops the path walk after ``depth`` steps or at a missing parent).

``verify_tree_greedy_cpu(predicts, accept_index, accept_token_num, candidates,
retrive_index, retrive_next_token, retrive_next_sibling, target_predict)``
    Greedy acceptance. From the root, repeatedly look for the first node in the
    current node ``u``'s child list (``retrive_next_token`` then
    ``retrive_next_sibling``, at most ``n`` nodes examined) whose
    ``candidates`` token equals ``target_predict.flat[retrive_index[b, u]]``;
    accept it and descend, at most ``accept_index.shape[1] - 1`` times. Writes
    ``accept_index[b, 0] = retrive_index[b, 0]``, ``accept_index[b, k]`` = the
    ``k``-th accepted node's ``retrive_index`` (later slots untouched),
    ``accept_token_num[b]`` = number accepted (bonus excluded), and
    ``predicts.flat[retrive_index[b, u]] = target_predict.flat[...]`` for every
    node ``u`` on the accepted path, root and last node included (other
    entries untouched). Keyword names are the ``retrive_*`` spelling that
    ``verify_tree_greedy_func`` passes. Matches CUDA ``VerifyTreeGreedy``
    (same header) and Triton ``verify_tree_greedy_kernel_triton``.

``reconstruct_indices_from_tree_mask(tree_mask, verified_seq_len, positions,
retrive_index, retrive_next_token, retrive_next_sibling, batch_size,
draft_token_num)``
    NGRAM: recover the links from an ``[bs, n, n]`` ancestor mask
    (``tree_mask[b, i, j]`` nonzero: ``j`` is on ``i``'s path; only ``j < i``
    counts). ``positions = seq_len + #ancestors``; parent = largest ancestor;
    ``retrive_next_token[i]`` = smallest ``k > i`` having ``i`` as an
    ancestor; ``retrive_next_sibling[i]`` = smallest ``k > i`` with the same
    parent (``-1`` for the root). Writes every entry of the first
    ``batch_size`` rows. Matches CUDA ``reconstructIndicesFromTreeMask``
    (``.../speculative/ngram.cuh``), the Triton
    ``_reconstruct_tree_mask_kernel``
    (``sglang/kernels/ops/speculative/reconstruct_tree.py``) and, for masks
    of real trees, ``_derive_tree_links`` in
    ``sglang/srt/speculative/ngram_worker.py``.

All three are vectorized over the batch; the only Python loops run over tree
depth or child-list length (bounded by ``n``), never over tokens or requests.
"""

from __future__ import annotations

import torch

from ._common import as_long

__all__ = [
    "build_tree_kernel_efficient_cpu",
    "verify_tree_greedy_cpu",
    "reconstruct_indices_from_tree_mask",
]

FULL_MASK = 0
QLEN_ONLY = 1
QLEN_ONLY_BITPACKING = 2

_LONG = torch.int64


def _node_range(n: int, device) -> torch.Tensor:
    return torch.arange(n, dtype=_LONG, device=device)


def _mask_bytes(tree_mask: torch.Tensor) -> torch.Tensor:
    """The mask's storage as a flat uint8 view (the kernels treat it as bytes)."""
    flat = tree_mask.view(-1)
    return flat if flat.dtype == torch.uint8 else flat.view(torch.uint8)


def _eagle_parent_nodes(
    parent_list: torch.Tensor,
    selected_index: torch.Tensor,
    bs: int,
    n: int,
    topk: int,
) -> torch.Tensor:
    """Parent node of every node: 0 for children of the root, -1 for the root
    itself and for nodes whose parent token was not selected."""
    parents = torch.full((bs, n), -1, dtype=_LONG, device=selected_index.device)
    if n == 1:
        return parents
    sel = as_long(selected_index[:bs]).reshape(bs, n - 1)
    # Non-negative indices: truncating division == floor division.
    parent_slot = torch.div(sel, int(topk), rounding_mode="trunc")
    under_root = parent_slot == 0
    width = parent_list.shape[-1] if parent_list.dim() > 1 else 0
    if width == 0:
        parents[:, 1:] = torch.where(under_root, 0, -1)
        return parents
    plist = as_long(parent_list[:bs]).reshape(bs, width)
    parent_token = plist.gather(1, parent_slot.clamp(0, width - 1))
    # match[b, i, p]: node (p + 1) carries the parent token of node (i + 1)
    match = sel.unsqueeze(1) == parent_token.unsqueeze(2)
    found = match.any(-1)
    first = match.to(torch.uint8).argmax(-1)  # first True along p
    parents[:, 1:] = torch.where(
        under_root, 0, torch.where(found, first + 1, -1)
    )
    return parents


def build_tree_kernel_efficient_cpu(
    parent_list: torch.Tensor,
    selected_index: torch.Tensor,
    verified_seq_len: torch.Tensor,
    tree_mask: torch.Tensor,
    positions: torch.Tensor,
    retrive_index: torch.Tensor,
    retrive_next_token: torch.Tensor,
    retrive_next_sibling: torch.Tensor,
    topk: int,
    depth: int,
    draft_token_num: int,
    tree_mask_mode: int,
) -> None:
    mode = int(tree_mask_mode)
    n = int(draft_token_num)
    if mode not in (FULL_MASK, QLEN_ONLY, QLEN_ONLY_BITPACKING):
        raise ValueError(f"invalid tree_mask_mode {tree_mask_mode!r}")
    if mode == QLEN_ONLY_BITPACKING and n > 32:
        raise ValueError("QLEN_ONLY_BITPACKING needs draft_token_num <= 32")
    bs = verified_seq_len.numel()
    if bs == 0:
        return
    device = verified_seq_len.device
    seq_len = as_long(verified_seq_len).reshape(-1)
    node = _node_range(n, device)
    parents = _eagle_parent_nodes(parent_list, selected_index, bs, n, int(topk))

    # on_path[b, i, j]: node j >= 1 lies on node i's path to the root (i too).
    # Walk all paths at once, at most `depth` steps, as the kernels do.
    on_path = torch.zeros((bs, n, n), dtype=torch.bool, device=device)
    cur = node.expand(bs, n).clone()
    active = cur > 0
    for _ in range(int(depth)):
        on_path |= (cur.unsqueeze(-1) == node) & active.unsqueeze(-1)
        cur = torch.where(active, parents.gather(1, cur.clamp_min(0)), cur)
        active = active & (cur > 0)
        if not bool(active.any()):
            break
    node_depth = on_path.sum(-1)
    positions.view(-1)[: bs * n].copy_((seq_len.unsqueeze(1) + node_depth).view(-1))

    mask_rows = on_path
    mask_rows[:, :, 0] = True  # every draft token sees the root
    _write_tree_mask(tree_mask, mask_rows, seq_len, bs, n, mode)

    retrive_index[:bs].copy_((torch.arange(bs, dtype=_LONG, device=device) * n).unsqueeze(1) + node)

    # Links. Children of p are the nodes whose parent is p, in node order.
    has_parent = parents >= 0
    is_child = parents.unsqueeze(1) == node.view(1, n, 1)  # [b, p, i]
    first_child = torch.where(is_child, node, n).amin(-1)  # [b, p]
    later = node.view(1, 1, n) > node.view(1, n, 1)  # [., i, k]: k > i
    same_parent = (parents.unsqueeze(2) == parents.unsqueeze(1)) & later
    next_sibling = torch.where(same_parent, node, n).amin(-1)  # [b, i]
    # The kernels build each child list by pushing at the front in descending
    # node order, so the last child inherits whatever the parent's first-child
    # slot held before (-1 when the caller pre-filled it, as SGLang does).
    old_first = as_long(retrive_next_token[:bs]).gather(1, parents.clamp_min(0))
    old_sibling = as_long(retrive_next_sibling[:bs])
    new_sibling = torch.where(
        next_sibling < n,
        next_sibling,
        torch.where(has_parent & (old_first != -1), old_first, old_sibling),
    )
    new_sibling = torch.where(has_parent, new_sibling, old_sibling)
    new_first = torch.where(first_child < n, first_child, as_long(retrive_next_token[:bs]))
    retrive_next_sibling[:bs].copy_(new_sibling)
    retrive_next_token[:bs].copy_(new_first)


def _write_tree_mask(
    tree_mask: torch.Tensor,
    rows: torch.Tensor,
    seq_len: torch.Tensor,
    bs: int,
    n: int,
    mode: int,
) -> None:
    device = rows.device
    out = _mask_bytes(tree_mask)
    col = _node_range(n, device)
    batch = torch.arange(bs, dtype=_LONG, device=device)
    if mode == QLEN_ONLY_BITPACKING:
        width = 4 if n > 16 else (2 if n > 8 else 1)
        bits = (rows.to(_LONG) << col).sum(-1).view(-1)  # one word per row
        base = torch.arange(bs * n, dtype=_LONG, device=device) * width
        out[base] = (bits & 0xFF).to(torch.uint8)
        for k in range(1, width):
            part = ((bits >> (8 * k)) & 0xFF).to(torch.uint8)
            out[base + k] |= part
        return
    if mode == FULL_MASK:
        # Request b's block starts after the earlier blocks (n rows of
        # seq_len_j + n each); within a row the tree columns follow the prefix.
        row_width = seq_len + n
        block_start = torch.cumsum(row_width * n, 0) - row_width * n
        first = (block_start + seq_len).view(bs, 1, 1)
        idx = first + row_width.view(bs, 1, 1) * col.view(1, n, 1) + col.view(1, 1, n)
    else:
        idx = (batch * n * n).view(bs, 1, 1) + (col * n).view(1, n, 1) + col.view(1, 1, n)
    out[idx.view(-1)] = rows.reshape(-1).to(torch.uint8)


def verify_tree_greedy_cpu(
    predicts: torch.Tensor,
    accept_index: torch.Tensor,
    accept_token_num: torch.Tensor,
    candidates: torch.Tensor,
    retrive_index: torch.Tensor,
    retrive_next_token: torch.Tensor,
    retrive_next_sibling: torch.Tensor,
    target_predict: torch.Tensor,
) -> None:
    bs, n = candidates.shape
    num_spec = accept_index.shape[1]
    if bs == 0:
        return
    device = candidates.device
    r_index = as_long(retrive_index)
    first_child = as_long(retrive_next_token)
    sibling = as_long(retrive_next_sibling)
    # target[b, u]: the target's greedy token after node u, i.e. what u's
    # accepted child must be.
    target = torch.take(target_predict, r_index)

    # accepted_child[b, u]: first node of u's child list whose candidate equals
    # target[b, u], or -1. Walk every child list at once, n nodes at most.
    accepted_child = torch.full((bs, n), -1, dtype=_LONG, device=device)
    cur = first_child.clone()
    searching = cur != -1
    for _ in range(n):
        if not bool(searching.any()):
            break
        safe = cur.clamp_min(0)
        hit = searching & (candidates.gather(1, safe) == target)
        accepted_child = torch.where(hit, cur, accepted_child)
        cur = torch.where(searching & ~hit, sibling.gather(1, safe), cur)
        searching = searching & ~hit & (cur != -1)

    # Descend from the root along accepted children, all rows at once.
    u = torch.zeros(bs, dtype=_LONG, device=device)
    alive = torch.ones(bs, dtype=torch.bool, device=device)
    nodes, accepted = [], []  # per step: node reached, rows that accepted
    for _ in range(1, num_spec):
        v = accepted_child.gather(1, u.unsqueeze(1)).squeeze(1)
        alive = alive & (v != -1)
        if not bool(alive.any()):
            break
        u = torch.where(alive, v, u)
        nodes.append(u)
        accepted.append(alive)

    # accept_index[b, 0] is always the root's row; slot k the k-th accepted
    # node's row; slots after the last accepted node keep their values.
    accept_index[:, 0] = r_index[:, 0].to(accept_index.dtype)
    root = torch.zeros(bs, 1, dtype=_LONG, device=device)
    if nodes:
        path = torch.stack(nodes, 1)  # [bs, steps]; a stopped row repeats its node
        took = torch.stack(accepted, 1)  # a prefix of each row is True
        slots = accept_index[:, 1 : 1 + path.shape[1]]
        slots.copy_(torch.where(took, r_index.gather(1, path).to(slots.dtype), slots))
        accept_token_num.view(-1)[:bs].copy_(took.sum(1))
        path = torch.cat((root, path), 1)
    else:
        accept_token_num.view(-1)[:bs].zero_()
        path = root
    # Every node on the path, root and last accepted node included, records
    # the target's token at its row.
    predicts.view(-1)[r_index.gather(1, path).reshape(-1)] = (
        target.gather(1, path).reshape(-1).to(predicts.dtype)
    )


def reconstruct_indices_from_tree_mask(
    tree_mask: torch.Tensor,
    verified_seq_len: torch.Tensor,
    positions: torch.Tensor,
    retrive_index: torch.Tensor,
    retrive_next_token: torch.Tensor,
    retrive_next_sibling: torch.Tensor,
    batch_size: int,
    draft_token_num: int,
) -> None:
    bs, n = int(batch_size), int(draft_token_num)
    if bs == 0:
        return
    device = tree_mask.device
    mask = tree_mask.reshape(-1)[: bs * n * n].view(bs, n, n) != 0
    node = _node_range(n, device)
    # ancestors[b, i, j]: j < i and the mask marks j on i's path.
    ancestors = mask & (node.view(1, n) < node.view(n, 1))
    seq_len = as_long(verified_seq_len).reshape(-1)[:bs]
    positions.view(-1)[: bs * n].copy_((seq_len.unsqueeze(1) + ancestors.sum(-1)).view(-1))
    retrive_index[:bs].copy_((torch.arange(bs, dtype=_LONG, device=device) * n).unsqueeze(1) + node)

    parent = torch.where(ancestors, node, -1).amax(-1)  # [b, i]
    first_desc = torch.where(ancestors, node.view(1, n, 1), n).amin(1)  # [b, j]
    retrive_next_token[:bs].copy_(torch.where(first_desc < n, first_desc, -1))
    later = node.view(1, 1, n) > node.view(1, n, 1)  # [., i, k]: k > i
    same_parent = (parent.unsqueeze(2) == parent.unsqueeze(1)) & later
    first_sib = torch.where(same_parent, node, n).amin(-1)
    retrive_next_sibling[:bs].copy_(
        torch.where((parent >= 0) & (first_sib < n), first_sib, -1)
    )
