"""SuffixDecoding's draft source: suffix trees over token ids (arXiv 2411.04975).

Each active request has its own tree over its prompt and its output so far;
one global tree holds the responses of recent requests (first in, first out,
at most ``max_cached_requests`` of them). ``speculate`` asks both trees and
keeps the better draft. The trees are the C++ extension
``arctic_sgl_kernel._suffix_tree``; this module owns the request bookkeeping
and never imports SGLang.

A response goes into the global tree as it is generated (not only when the
request stops), so concurrent requests with similar outputs help each other
at once; its slot is taken, and the oldest response evicted, in
``start_request``.
"""

from __future__ import annotations

import numbers
from collections import OrderedDict
from dataclasses import dataclass
from typing import Hashable, Sequence

try:
    from arctic_sgl_kernel._suffix_tree import SuffixTree, speculate_best
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "arctic_sgl_kernel._suffix_tree is missing: reinstall sglang-arctic with "
        "`pip install .` so that its C++ extension is compiled"
    ) from exc

__all__ = ["SuffixDraft", "SuffixCache", "SuffixTree"]

# The per-request tree holds a single sequence: prompt then output.
_REQUEST_SEQ_ID = 0
_MAX_SEQ_ID = 0x7FFFFFFF  # sequence ids are int32 in the native tree


@dataclass(frozen=True)
class SuffixDraft:
    """Draft tokens proposed after the context.

    ``parents[i]`` is the index in ``token_ids`` of the token that token ``i``
    follows, ``-1`` when it follows the context directly; a path draft has
    ``parents == [-1, 0, 1, ...]``. ``probs[i]`` is the tree's estimate that
    the whole path from the context to token ``i`` is right (a product of
    child/parent count ratios), so ``score = sum(probs)`` estimates the
    number of accepted tokens; ``match_len`` is the number of context tokens
    matched.
    """

    token_ids: list[int]
    parents: list[int]
    probs: list[float]
    score: float
    match_len: int

    def __len__(self) -> int:
        return len(self.token_ids)


def _int_list(token_ids: Sequence[int]) -> list[int]:
    # numpy arrays and torch tensors convert in one call; lists pass through.
    to_list = getattr(token_ids, "tolist", None)
    return to_list() if to_list is not None else list(token_ids)


class SuffixCache:
    """Per-request suffix trees plus one global tree of recent responses.

    Args:
        max_depth: longest suffix stored, and longest context suffix matched
            (the reference uses 64, vLLM 24). Appending a token costs
            O(max_depth).
        max_cached_requests: responses kept in the global tree; the oldest is
            evicted first. 0 disables the global tree, a negative value keeps
            every response.
    """

    def __init__(self, max_depth: int = 64, max_cached_requests: int = 10000):
        if max_depth < 1:
            raise ValueError(f"max_depth must be >= 1, got {max_depth}")
        if max_cached_requests > _MAX_SEQ_ID:
            raise ValueError(
                f"max_cached_requests must be at most {_MAX_SEQ_ID}, got {max_cached_requests}"
            )
        self._max_depth = max_depth
        self._max_cached_requests = max_cached_requests
        self._global_tree = SuffixTree(max_depth)
        self._request_trees: dict[Hashable, SuffixTree] = {}
        # req_id -> global sequence id, oldest first (the FIFO eviction order).
        self._cached_seq_ids: OrderedDict[Hashable, int] = OrderedDict()
        self._seq_ids_in_use: set[int] = set()
        self._next_seq_id = 0

    @property
    def max_depth(self) -> int:
        return self._max_depth

    @property
    def max_cached_requests(self) -> int:
        return self._max_cached_requests

    @property
    def active_requests(self) -> list[Hashable]:
        """Requests between ``start_request`` and ``stop_request``."""
        return list(self._request_trees)

    @property
    def cached_requests(self) -> list[Hashable]:
        """Requests whose responses are in the global tree, oldest first."""
        return list(self._cached_seq_ids)

    @property
    def global_tree(self) -> SuffixTree:
        """The tree of cached responses (sequence ids are internal)."""
        return self._global_tree

    def request_tree(self, req_id: Hashable) -> SuffixTree:
        """An active request's own tree: sequence 0 is its prompt then output."""
        return self._active_tree(req_id)

    def start_request(self, req_id: Hashable, prompt_ids: Sequence[int]) -> None:
        """Begin a request: index its prompt and reserve its global-tree slot.

        Raises ValueError if ``req_id`` is already active. A cached response
        under the same id is replaced.
        """
        if req_id in self._request_trees:
            raise ValueError(f"request {req_id!r} is already active")
        tree = SuffixTree(self._max_depth)
        tree.extend(_REQUEST_SEQ_ID, _int_list(prompt_ids))
        self._request_trees[req_id] = tree
        if self._max_cached_requests == 0:
            return
        if req_id in self._cached_seq_ids:
            self.evict_cached_response(req_id)
        self._cached_seq_ids[req_id] = self._allocate_seq_id()
        if self._max_cached_requests > 0:
            while len(self._cached_seq_ids) > self._max_cached_requests:
                self.evict_cached_response(next(iter(self._cached_seq_ids)))

    def add_active_response(self, req_id: Hashable, token_ids: int | Sequence[int]) -> None:
        """Append newly generated (accepted) tokens to the request's trees."""
        tree = self._active_tree(req_id)
        if isinstance(token_ids, numbers.Integral):
            tokens = [int(token_ids)]
        else:
            tokens = _int_list(token_ids)
        tree.extend(_REQUEST_SEQ_ID, tokens)
        seq_id = self._cached_seq_ids.get(req_id)
        if seq_id is not None:  # None: global tree off, or already evicted
            self._global_tree.extend(seq_id, tokens)

    def stop_request(self, req_id: Hashable) -> None:
        """Finish a request: drop its own tree; its response stays cached."""
        self._active_tree(req_id)
        del self._request_trees[req_id]

    def evict_cached_response(self, req_id: Hashable) -> None:
        """Remove a request's response from the global tree."""
        seq_id = self._cached_seq_ids.pop(req_id, None)
        if seq_id is None:
            raise ValueError(f"request {req_id!r} has no cached response")
        self._seq_ids_in_use.discard(seq_id)
        if self._global_tree.has_seq(seq_id):  # an empty response was never added
            self._global_tree.remove(seq_id)

    def speculate(
        self,
        req_id: Hashable,
        context_ids: Sequence[int],
        max_spec_tokens: int = 16,
        factor: float = 1.0,
        offset: float = 0.0,
        min_token_prob: float = 0.1,
        use_tree: bool = False,
    ) -> SuffixDraft:
        """Draft tokens to follow ``context_ids`` (the request's prompt + output).

        Only the last ``max_depth`` context tokens are matched. For every match
        length m that occurs, a draft of at most
        ``min(max_spec_tokens, floor(m * factor + offset))`` tokens is built,
        stopping where the estimated probability drops below
        ``min_token_prob``; the highest score wins (ties: the longer match),
        from the request's tree unless the global tree scores strictly higher.
        ``use_tree`` drafts a tree (best-first by probability, ``parents``
        encodes it) instead of one path.
        """
        if max_spec_tokens < 0:
            raise ValueError(f"max_spec_tokens must be >= 0, got {max_spec_tokens}")
        tree = self._active_tree(req_id)
        global_tree = self._global_tree if self._max_cached_requests != 0 else None
        return SuffixDraft(*speculate_best(
            tree, global_tree, _int_list(context_ids[-self._max_depth :]),
            max_spec_tokens, factor, offset, min_token_prob, use_tree,
        ))

    def check_integrity(self) -> None:
        """Raise AssertionError naming the first broken invariant of any tree."""
        for name, tree in [("global", self._global_tree), *self._request_trees.items()]:
            problem = tree.check_integrity()
            if problem:
                raise AssertionError(f"suffix tree {name!r}: {problem}")

    def estimate_memory(self) -> int:
        """Approximate bytes held by all trees."""
        trees = [self._global_tree, *self._request_trees.values()]
        return sum(tree.estimate_memory() for tree in trees)

    def _active_tree(self, req_id: Hashable) -> SuffixTree:
        tree = self._request_trees.get(req_id)
        if tree is None:
            raise ValueError(f"request {req_id!r} is not active")
        return tree

    def _allocate_seq_id(self) -> int:
        # Ids wrap around at int32; skipping ones still cached keeps them unique.
        while True:
            seq_id = self._next_seq_id
            self._next_seq_id = (self._next_seq_id + 1) & _MAX_SEQ_ID
            if seq_id not in self._seq_ids_in_use:
                self._seq_ids_in_use.add(seq_id)
                return seq_id
