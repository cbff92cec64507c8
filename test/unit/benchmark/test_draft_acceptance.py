"""benchmark/draft_acceptance.py: settings parsing, NGRAM's mask to parents, the
cost model, and the replay of our real suffix tree on a stream it can copy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

_REPO = Path(__file__).resolve().parents[3]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

from benchmark import draft_acceptance as A  # noqa: E402
from benchmark.golden_replay import Stream  # noqa: E402


def test_settings_parse_every_key_or_refuse():
    s = A.SuffixSettings.parse("factor=2,offset=4,min_prob=0.05,tree=1")
    assert s == A.SuffixSettings(2.0, 4.0, 0.05, True)
    assert A.SuffixSettings.parse("factor=1,offset=0,min_prob=0.1,tree=0").tree is False
    for bad in ("factor=2,offset=4,min_prob=0.05", "factor=x,offset=0,min_prob=0.1,tree=0", "tree"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected factor="):
            A.SuffixSettings.parse(bad)


def test_parents_from_an_ancestor_or_self_mask():
    # slot 0 root; 1 and 2 children of the root; 3 child of 1; 4 child of 3
    rows = {0: [0], 1: [0, 1], 2: [0, 2], 3: [0, 1, 3], 4: [0, 1, 3, 4]}
    mask = np.zeros((5, 5), dtype=bool)
    for i, cols in rows.items():
        mask[i, cols] = True
    assert A._parents_from_mask(mask) == [-1, -1, 0, 2]


def test_cost_model_rate():
    r = A.Acceptance("x", steps=10, tokens=30, drafted=40)
    # 10 steps x 50 ms + (40 drafted + 10 roots) x 1 ms = 0.55 s
    assert r.rate(50.0, 1.0) == pytest.approx(30 / 0.55)


def test_replay_ours_copies_a_repeated_reply():
    reply = list(range(100, 140))
    # the prompt already holds the reply: after the first step the drafter copies it
    stream = Stream("w", "w:0", 0, [1, 2] + reply + [3], reply)
    settings = A.SuffixSettings(2.0, 4.0, 0.05, True)
    r = A.replay_ours([stream], settings, max_spec_tokens=16)
    assert r.tokens == len(reply)
    assert r.steps < len(reply) / 4  # far fewer steps than tokens
    no_draft = A.replay_ours([Stream("w", "w:1", 0, [7, 8], [9, 10, 11])], settings, 16)
    assert (no_draft.tokens, no_draft.steps) == (3, 3)  # nothing to copy: one token per step


def test_replay_ngram_learns_from_the_output_it_has_seen():
    pattern = list(range(200, 220))
    stream = Stream("w", "w:0", 0, [1, 2, 3], pattern * 3)
    r = A.replay_ngram([stream])
    assert r.tokens == 60
    assert r.drafted == r.steps * (A.NGRAM_DRAFT_TOKENS - 1)
    # the first pass is new to its trie; the next two are copied many tokens a step
    assert r.steps < 20 + 40 / 3
