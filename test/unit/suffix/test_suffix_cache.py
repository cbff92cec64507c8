"""SuffixCache: per-request trees, the global tree of responses, FIFO eviction."""

from __future__ import annotations

import pytest

from sglang_arctic.spec.suffix_tree import SuffixCache, SuffixDraft

RESPONSE = [40, 41, 42, 43, 44, 45]


def serve(cache: SuffixCache, req_id, prompt, response) -> None:
    cache.start_request(req_id, prompt)
    cache.add_active_response(req_id, response)
    cache.stop_request(req_id)


def draft_after(cache: SuffixCache, req_id, context, **kwargs) -> SuffixDraft:
    return cache.speculate(req_id, context, max_spec_tokens=8, factor=4.0, **kwargs)


def test_request_tree_covers_prompt_and_output():
    cache = SuffixCache(max_depth=16, max_cached_requests=0)
    cache.start_request("a", [1, 2, 3, 4, 5])
    draft = draft_after(cache, "a", [1, 2, 3, 4, 5, 9, 2, 3])
    assert isinstance(draft, SuffixDraft)
    assert draft.token_ids == [4, 5] and draft.parents == [-1, 0] and draft.match_len == 2
    cache.add_active_response("a", [9, 2, 3, 4])
    cache.add_active_response("a", 7)  # a single token
    draft = draft_after(cache, "a", [1, 2, 3, 4, 5, 9, 2, 3, 4, 7, 1, 2])
    # "1 2" was followed by 3, 4 once: prob 1; then 5 or 7 (1/2 each).
    assert draft.token_ids[:2] == [3, 4] and draft.probs[:2] == [1.0, 1.0]
    assert cache.active_requests == ["a"]
    cache.check_integrity()


def test_global_tree_shares_responses_between_requests():
    cache = SuffixCache(max_depth=16, max_cached_requests=4)
    serve(cache, "a", [1, 2], RESPONSE)
    cache.start_request("b", [7, 8])
    # "b"'s own tree knows nothing after 41; the global tree has a's response.
    draft = draft_after(cache, "b", [7, 8, 40, 41])
    assert draft.token_ids == [42, 43, 44, 45]
    assert cache.cached_requests == ["a", "b"]


def test_responses_enter_the_global_tree_while_generated():
    cache = SuffixCache(max_depth=16, max_cached_requests=4)
    cache.start_request("a", [1])
    cache.start_request("b", [2])
    cache.add_active_response("a", RESPONSE)
    assert draft_after(cache, "b", [2, 42, 43]).token_ids == [44, 45]


def test_request_tree_wins_ties_and_global_wins_when_better():
    cache = SuffixCache(max_depth=16, max_cached_requests=4)
    serve(cache, "old", [0], [5, 6, 7, 8])
    cache.start_request("new", [5, 6, 9])
    # Own prompt: "5 6" -> 9, where the prompt ends (score 1); the global
    # tree's "5 6" -> 7 8 scores 2 and wins.
    assert draft_after(cache, "new", [1, 5, 6]).token_ids == [7, 8]
    # Equal scores: the request's own tree is kept.
    cache.add_active_response("new", [1, 5, 6, 9, 3])
    draft = draft_after(cache, "new", [5, 6, 9, 1, 5, 6])
    assert draft.token_ids[0] == 9


def test_fifo_eviction_keeps_the_newest_responses():
    cache = SuffixCache(max_depth=16, max_cached_requests=2)
    serve(cache, "r1", [0], [11, 12, 13, 14])
    serve(cache, "r2", [0], [21, 22, 23, 24])
    assert cache.cached_requests == ["r1", "r2"]
    cache.start_request("r3", [0])  # takes a slot: r1 goes
    assert cache.cached_requests == ["r2", "r3"]
    assert draft_after(cache, "r3", [0, 11, 12]).token_ids == []
    assert draft_after(cache, "r3", [0, 21, 22]).token_ids == [23, 24]
    cache.check_integrity()


def test_evicted_active_request_keeps_its_own_tree():
    cache = SuffixCache(max_depth=16, max_cached_requests=1)
    cache.start_request("a", [1, 2, 3])
    cache.start_request("b", [4])  # evicts a's (empty) response
    cache.add_active_response("a", [7, 8, 1, 2])  # only a's own tree now
    assert cache.cached_requests == ["b"]
    # "1 2" -> the rest of a's own sequence.
    assert draft_after(cache, "a", [1, 2, 3, 7, 8, 1, 2]).token_ids == [3, 7, 8, 1, 2]
    assert draft_after(cache, "b", [4, 7, 8]).token_ids == []
    cache.check_integrity()


def test_zero_disables_and_negative_keeps_everything():
    off = SuffixCache(max_depth=8, max_cached_requests=0)
    serve(off, "a", [0], RESPONSE)
    off.start_request("b", [0])
    assert off.cached_requests == [] and off.global_tree.num_seqs() == 0
    assert draft_after(off, "b", [0, 40, 41]).token_ids == []

    unlimited = SuffixCache(max_depth=8, max_cached_requests=-1)
    for i in range(30):
        serve(unlimited, i, [0], [100 + i, 200 + i])
    assert len(unlimited.cached_requests) == 30
    unlimited.start_request("q", [0])
    assert draft_after(unlimited, "q", [0, 100]).token_ids == [200]


def test_reused_request_id_replaces_its_cached_response():
    cache = SuffixCache(max_depth=8, max_cached_requests=4)
    serve(cache, "a", [0], [1, 2, 3])
    serve(cache, "a", [0], [1, 5, 6])
    assert cache.cached_requests == ["a"]
    cache.start_request("b", [0])
    assert draft_after(cache, "b", [0, 1]).token_ids == [5, 6]


def test_context_longer_than_max_depth_and_numpy_like_inputs():
    np = pytest.importorskip("numpy")
    cache = SuffixCache(max_depth=4, max_cached_requests=0)
    cache.start_request("a", np.arange(20))
    context = np.arange(30, 40).tolist() + [5, 6, 7]
    draft = cache.speculate("a", context, max_spec_tokens=3, factor=2.0)
    # Window = the last 4 tokens "39 5 6 7". Suffixes hold 4 tokens, so after
    # "6 7" (budget 3) only 8 9 remain: score 2, the same as after "7"
    # (budget 2), and the tie goes to the longer match; "5 6 7" leaves just 8.
    assert draft.token_ids == [8, 9] and draft.match_len == 2
    cache.add_active_response("a", np.int64(3))
    assert cache.request_tree("a").seq_len(0) == 21


def test_memory_estimate_and_integrity_cover_all_trees():
    cache = SuffixCache(max_depth=8, max_cached_requests=2)
    base = cache.estimate_memory()
    cache.start_request("a", list(range(200)))
    cache.add_active_response("a", list(range(100)))
    assert cache.estimate_memory() > base + 300 * 4
    cache.check_integrity()
    cache.stop_request("a")
    serve(cache, "b", [], [1])
    serve(cache, "c", [], [2])  # evicts a's response
    assert cache.estimate_memory() < base + 1000


def test_misuse_raises_value_error():
    with pytest.raises(ValueError, match="max_depth"):
        SuffixCache(max_depth=0)
    cache = SuffixCache(max_depth=8)
    cache.start_request("a", [1])
    with pytest.raises(ValueError, match="already active"):
        cache.start_request("a", [1])
    with pytest.raises(ValueError, match="not active"):
        cache.add_active_response("zzz", [1])
    with pytest.raises(ValueError, match="not active"):
        cache.speculate("zzz", [1, 2])
    with pytest.raises(ValueError, match="max_spec_tokens"):
        cache.speculate("a", [1, 2], max_spec_tokens=-1)
    with pytest.raises(ValueError, match="no cached response"):
        cache.evict_cached_response("zzz")
    cache.stop_request("a")
    with pytest.raises(ValueError, match="not active"):
        cache.stop_request("a")
