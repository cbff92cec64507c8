"""The native suffix tree against the slow pure-Python trie model, on random
operation sequences: every draft (tokens, parents, probabilities, score,
match length) must be identical, and the native invariants must hold.

Small vocabularies make repeats, ties and deep shared paths common, which is
where path compression, sibling order and removal are hardest.
"""

from __future__ import annotations

import random

import pytest

from sglang_arctic.spec.suffix_reference import ReferenceSuffixCache, ReferenceSuffixTree
from sglang_arctic.spec.suffix_tree import SuffixCache, SuffixTree


def random_speculate_args(rng: random.Random) -> tuple:
    return (
        rng.choice([1, 2, 4, 8, 16]),  # max_spec_tokens
        rng.choice([0.5, 1.0, 1.5, 3.0]),  # max_spec_factor
        rng.choice([-1.0, 0.0, 0.5, 2.0]),  # max_spec_offset
        rng.choice([0.0, 0.05, 0.1, 0.3, 0.6]),  # min_token_prob
        rng.random() < 0.5,  # use_tree_spec
    )


def assert_same_draft(native, reference, where: str) -> None:
    got = (native.token_ids, native.parents, native.probs, native.score, native.match_len)
    want = (
        reference.token_ids,
        reference.parents,
        reference.probs,
        reference.score,
        reference.match_len,
    )
    assert got == want, where


@pytest.mark.parametrize("seed", range(16))
def test_tree_matches_reference(seed):
    rng = random.Random(seed)
    max_depth = rng.choice([1, 2, 3, 5, 8, 13])
    vocab = rng.choice([2, 3, 5, 12])
    native = SuffixTree(max_depth)
    reference = ReferenceSuffixTree(max_depth)
    live: list[int] = []
    next_id = 0
    for step in range(1000):
        op = rng.random()
        if op < 0.1 or not live:
            seq_id = next_id
            live.append(seq_id)
            next_id += 1
        elif op < 0.17:
            seq_id = live.pop(rng.randrange(len(live)))
            native.remove(seq_id)
            reference.remove(seq_id)
            assert native.check_integrity() == "", f"seed {seed} step {step}"
            continue
        else:
            seq_id = rng.choice(live)
        tokens = [rng.randrange(vocab) for _ in range(rng.randint(1, 6))]
        native.extend(seq_id, tokens)
        reference.extend(seq_id, tokens)
        for _ in range(2):
            if rng.random() < 0.5:
                # A stored sequence's tail: long matches, deep drafts.
                stored = reference.seqs[rng.choice(live)]
                context = stored[-rng.randint(1, max_depth + 3) :]
            else:
                context = [rng.randrange(vocab) for _ in range(rng.randint(0, max_depth + 3))]
            args = random_speculate_args(rng)
            assert_same_draft(
                native.speculate(context, *args),
                reference.speculate(context, *args),
                f"seed {seed} step {step} context {context} args {args}",
            )
        if step % 25 == 0:
            assert native.check_integrity() == "", f"seed {seed} step {step}"
    assert native.check_integrity() == ""
    for seq_id in live:
        native.remove(seq_id)
    assert native.check_integrity() == "" and native.num_nodes() == 1


@pytest.mark.parametrize("seed", range(8))
def test_cache_matches_reference(seed):
    rng = random.Random(1000 + seed)
    max_depth = rng.choice([4, 8, 16])
    max_cached = rng.choice([0, 1, 3, -1])
    vocab = rng.choice([3, 6])
    native = SuffixCache(max_depth=max_depth, max_cached_requests=max_cached)
    reference = ReferenceSuffixCache(max_depth=max_depth, max_cached_requests=max_cached)
    contexts: dict[int, list[int]] = {}
    next_req = 0
    for step in range(600):
        op = rng.random()
        if op < 0.12 or not contexts:
            # Sometimes reuse a finished request's id: its cached response is replaced.
            req_id = rng.randrange(next_req + 1) if rng.random() < 0.2 else next_req
            if req_id in contexts:
                continue
            next_req = max(next_req, req_id + 1)
            prompt = [rng.randrange(vocab) for _ in range(rng.randint(0, 20))]
            native.start_request(req_id, prompt)
            reference.start_request(req_id, prompt)
            contexts[req_id] = list(prompt)
        elif op < 0.2:
            req_id = rng.choice(list(contexts))
            native.stop_request(req_id)
            reference.stop_request(req_id)
            del contexts[req_id]
            continue
        req_id = rng.choice(list(contexts))
        args = random_speculate_args(rng)
        assert_same_draft(
            native.speculate(req_id, contexts[req_id], *args),
            reference.speculate(req_id, contexts[req_id], *args),
            f"seed {seed} step {step}",
        )
        accepted = [rng.randrange(vocab) for _ in range(rng.randint(1, 4))]
        native.add_active_response(req_id, accepted)
        reference.add_active_response(req_id, accepted)
        contexts[req_id].extend(accepted)
        assert native.cached_requests == list(reference.cached)
    native.check_integrity()
