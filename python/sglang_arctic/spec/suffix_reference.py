"""Slow pure-Python model of the native suffix tree, for tests.

The same semantics as ``arctic_sgl_kernel._suffix_tree.SuffixTree`` (see
sgl-kernel/csrc/suffix_tree/suffix_tree.h) without path compression: one
trie node per token, so every rule is a few obvious lines. Outputs must be
identical, probabilities included, because both sides compute them with the
same double-precision operations in the same order.

Sibling order, which decides ties between equally frequent continuations:
children are kept in non-increasing count order; a child whose count went up
goes after the siblings that already had its new count, a child whose count
went down goes before the siblings that already had its new count, and a new
child goes last.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

# Same slack as the native tree for m * factor + offset landing just under an integer.
_BUDGET_EPSILON = 1e-6


class _TrieNode:
    __slots__ = ("token", "count", "parent", "children", "order")

    def __init__(self, token: int, parent: "_TrieNode | None"):
        self.token = token
        self.count = 0
        self.parent = parent
        self.children: dict[int, _TrieNode] = {}
        self.order: list[_TrieNode] = []  # children, most frequent first


@dataclass
class ReferenceDraft:
    token_ids: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    score: float = 0.0
    match_len: int = 0

    def emit(self, token: int, parent: int, prob: float) -> int:
        self.token_ids.append(token)
        self.parents.append(parent)
        self.probs.append(prob)
        self.score += prob
        return len(self.token_ids) - 1


class ReferenceSuffixTree:
    """Trie of every suffix (cut to ``max_depth`` tokens) of every sequence."""

    def __init__(self, max_depth: int):
        if max_depth < 1:
            raise ValueError(f"max_depth must be >= 1, got {max_depth}")
        self.max_depth = max_depth
        self.root = _TrieNode(token=-1, parent=None)
        self.seqs: dict[int, list[int]] = {}
        # Per sequence: trie nodes where its still-growing suffixes end, oldest first.
        self.active: dict[int, list[_TrieNode]] = {}

    def has_seq(self, seq_id: int) -> bool:
        return seq_id in self.seqs

    def append(self, seq_id: int, token: int) -> None:
        self.seqs.setdefault(seq_id, []).append(token)
        ends = self.active.setdefault(seq_id, [])
        ends.append(self.root)
        self.root.count += 1
        if len(ends) > self.max_depth:
            ends.pop(0)
        for i, node in enumerate(ends):
            child = node.children.get(token)
            if child is None:
                child = _TrieNode(token, node)
                child.count = 1
                node.children[token] = child
                node.order.append(child)
            else:
                self._increment(child)
            ends[i] = child

    def extend(self, seq_id: int, tokens: list[int]) -> None:
        for token in tokens:
            self.append(seq_id, token)

    def remove(self, seq_id: int) -> None:
        if seq_id not in self.seqs:
            raise ValueError(f"cannot remove unknown sequence {seq_id}")
        seq = self.seqs.pop(seq_id)
        del self.active[seq_id]
        for start in range(len(seq)):
            self.root.count -= 1
            node = self.root
            for pos in range(start, min(start + self.max_depth, len(seq))):
                child = node.children[seq[pos]]
                if child.count == 1:
                    del node.children[child.token]
                    node.order.remove(child)
                    break
                self._decrement(child)
                node = child

    def speculate(
        self,
        context: list[int],
        max_spec_tokens: int,
        max_spec_factor: float = 1.0,
        max_spec_offset: float = 0.0,
        min_token_prob: float = 0.1,
        use_tree_spec: bool = False,
    ) -> ReferenceDraft:
        window = list(context)[-self.max_depth :]
        best = ReferenceDraft()
        for match_len in range(1, len(window)):
            node = self._match(window[len(window) - match_len :])
            if node is None:
                break
            raw = math.floor(match_len * max_spec_factor + max_spec_offset + _BUDGET_EPSILON)
            budget = min(max_spec_tokens, max(0, raw))
            draft = ReferenceDraft()
            if budget > 0:
                if use_tree_spec:
                    self._speculate_tree(node, budget, min_token_prob, draft)
                else:
                    self._speculate_path(node, budget, min_token_prob, draft)
            if draft.score >= best.score:
                best = draft
                best.match_len = match_len
        return best

    def _match(self, pattern: list[int]) -> _TrieNode | None:
        node = self.root
        for token in pattern:
            node = node.children.get(token)
            if node is None:
                return None
        return node

    @staticmethod
    def _speculate_path(node: _TrieNode, budget: int, min_prob: float, draft: ReferenceDraft):
        prob = 1.0
        while len(draft.token_ids) < budget and node.order:
            child = node.order[0]
            prob = prob * (child.count / node.count)
            if prob < min_prob:
                break
            draft.emit(child.token, len(draft.token_ids) - 1, prob)
            node = child

    @staticmethod
    def _speculate_tree(node: _TrieNode, budget: int, min_prob: float, draft: ReferenceDraft):
        heap: list[tuple[float, int, _TrieNode, int]] = []
        pushed = 0

        def push_children(parent_node: _TrieNode, prob: float, parent_index: int) -> None:
            nonlocal pushed
            for child in parent_node.order:
                p = prob * (child.count / parent_node.count)
                if p < min_prob:
                    break
                heapq.heappush(heap, (-p, pushed, child, parent_index))
                pushed += 1

        push_children(node, 1.0, -1)
        while len(draft.token_ids) < budget and heap:
            neg_prob, _, child, parent_index = heapq.heappop(heap)
            index = draft.emit(child.token, parent_index, -neg_prob)
            push_children(child, -neg_prob, index)

    @staticmethod
    def _increment(node: _TrieNode) -> None:
        siblings = node.parent.order
        old = node.count
        siblings.remove(node)
        node.count = old + 1
        at = next((i for i, s in enumerate(siblings) if s.count <= old), len(siblings))
        siblings.insert(at, node)

    @staticmethod
    def _decrement(node: _TrieNode) -> None:
        siblings = node.parent.order
        old = node.count
        siblings.remove(node)
        node.count = old - 1
        at = next((i for i, s in enumerate(siblings) if s.count < old), len(siblings))
        siblings.insert(at, node)


class ReferenceSuffixCache:
    """The request bookkeeping of ``sglang_arctic.spec.suffix_tree.SuffixCache``
    over reference trees (global tree fed live, FIFO slots taken at start)."""

    def __init__(self, max_depth: int = 64, max_cached_requests: int = 10000):
        self.max_depth = max_depth
        self.max_cached_requests = max_cached_requests
        self.global_tree = ReferenceSuffixTree(max_depth)
        self.request_trees: dict[object, ReferenceSuffixTree] = {}
        self.cached: dict[object, int] = {}  # insertion order = eviction order
        self.next_seq_id = 0

    def start_request(self, req_id, prompt_ids) -> None:
        if req_id in self.request_trees:
            raise ValueError(f"request {req_id!r} is already active")
        tree = ReferenceSuffixTree(self.max_depth)
        tree.extend(0, list(prompt_ids))
        self.request_trees[req_id] = tree
        if self.max_cached_requests == 0:
            return
        if req_id in self.cached:
            self.evict_cached_response(req_id)
        self.cached[req_id] = self.next_seq_id
        self.next_seq_id += 1
        while 0 < self.max_cached_requests < len(self.cached):
            self.evict_cached_response(next(iter(self.cached)))

    def add_active_response(self, req_id, token_ids) -> None:
        tokens = [token_ids] if isinstance(token_ids, int) else list(token_ids)
        self.request_trees[req_id].extend(0, tokens)
        if req_id in self.cached:
            self.global_tree.extend(self.cached[req_id], tokens)

    def stop_request(self, req_id) -> None:
        del self.request_trees[req_id]

    def evict_cached_response(self, req_id) -> None:
        seq_id = self.cached.pop(req_id)
        if self.global_tree.has_seq(seq_id):
            self.global_tree.remove(seq_id)

    def speculate(
        self,
        req_id,
        context_ids,
        max_spec_tokens=16,
        factor=1.0,
        offset=0.0,
        min_token_prob=0.1,
        use_tree=False,
    ) -> ReferenceDraft:
        context = list(context_ids)[-self.max_depth :]
        args = (context, max_spec_tokens, factor, offset, min_token_prob, use_tree)
        best = self.request_trees[req_id].speculate(*args)
        if self.max_cached_requests != 0:
            candidate = self.global_tree.speculate(*args)
            if candidate.score > best.score:
                best = candidate
        return best
