"""benchmark/golden_replay.py: acceptance accounting, the replay loop on our real
suffix tree, the lock-step comparison, stream files and the verdict. The peer
(arctic-inference) is not needed: the comparisons here pit our tree against itself
or against a drafter with a known behaviour."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

_REPO = Path(__file__).resolve().parents[3]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

from benchmark import golden_replay as G  # noqa: E402


def test_accepted_path_counts_the_matching_prefix():
    assert G.accepted_path([5, 6, 7], [1, 5, 6, 9], start=1) == 2
    assert G.accepted_path([5, 6, 7], [5, 6], start=0) == 2  # stream ends first
    assert G.accepted_path([], [1, 2]) == 0
    assert G.accepted_path([3], [1, 2]) == 0


def test_accepted_tree_takes_the_deepest_matching_branch():
    # root children: 0 (tok 1) and 1 (tok 2); 2 (tok 3) under 0; 3 (tok 4) under 1; 4 (tok 5) under 3
    tokens, parents = [1, 2, 3, 4, 5], [-1, -1, 0, 1, 3]
    assert G.accepted_tree(tokens, parents, [2, 4, 5, 9]) == 3
    assert G.accepted_tree(tokens, parents, [1, 3, 7]) == 2
    assert G.accepted_tree(tokens, parents, [1, 4, 5]) == 1  # 4 hangs under 2, not under 1
    assert G.accepted_tree(tokens, parents, [9]) == 0
    assert G.accepted_tree(tokens, parents, [2, 4], start=0) == 2  # capped by the stream


def test_accepted_tree_equals_path_on_path_drafts():
    draft = [4, 5, 6, 7]
    for target in ([4, 5, 6, 7, 8], [4, 5, 0], [0], [4, 5, 6]):
        assert G.accepted_tree(draft, [-1, 0, 1, 2], target) == G.accepted_path(draft, target)


def test_accepted_tree_rejects_bad_parents():
    with pytest.raises(ValueError):
        G.accepted_tree([1, 2], [1, 0], [1, 2])
    with pytest.raises(ValueError):
        G.accepted_tree([1], [5], [1])


def _streams() -> list[G.Stream]:
    text = [11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22] * 3
    return [
        G.Stream("code_edit", "a", 0, [1, 2, 3], list(text)),
        # the same answer again: the global tree has it now
        G.Stream("code_edit", "b", 1, [4, 5, 6], list(text)),
        G.Stream("template", "c", 0, [7, 8], [30, 31, 32, 33, 34, 35]),
    ]


@pytest.mark.parametrize("use_tree", [False, True])
def test_replay_on_our_tree_emits_every_token_and_learns_across_streams(use_tree):
    params = G.Params(max_depth=64, max_cached_requests=100, max_spec_tokens=8, use_tree=use_tree)
    stats = G.replay(_streams(), G.ours_drafter(), params)
    assert [s.emitted for s in stats] == [36, 36, 6]
    for s in stats:
        # each step emits its accepted drafts plus one, except the last may be cut by the stream end
        assert s.steps <= s.emitted <= s.steps + s.accepted
        assert s.accepted <= s.drafted
    first, second, fresh = stats
    # The first stream repeats itself after 12 tokens; the second is all known.
    assert first.accepted > 0
    assert second.accepted > first.accepted
    assert second.steps < first.steps
    assert fresh.accepted == 0
    again = G.replay(_streams(), G.ours_drafter(), params)
    assert [(s.steps, s.accepted) for s in again] == [(s.steps, s.accepted) for s in stats]


def test_lockstep_of_a_drafter_with_itself_is_identical():
    params = G.Params(max_spec_tokens=8)
    ag = G.compare_lockstep(_streams(), G.ours_drafter(), G.Drafter("again", G.ours_drafter().factory), params)
    assert ag.steps > 0 and ag.same_tokens == ag.steps == ag.same_accepted == ag.same_all
    assert not ag.examples


class _NeverDrafts:
    def start_request(self, rid, prompt):
        pass

    def stop_request(self, rid):
        pass

    def add_active_response(self, rid, tokens):
        pass

    def speculate(self, rid, context, *args):
        return SimpleNamespace(token_ids=[], parents=[], probs=[], score=0.0, match_len=0)


def test_lockstep_reports_where_drafts_differ():
    params = G.Params(max_spec_tokens=8)
    ag = G.compare_lockstep(_streams(), G.ours_drafter(), G.Drafter("peer", lambda p: _NeverDrafts()), params,
                            max_examples=2)
    assert ag.same_tokens < ag.steps
    assert len(ag.examples) == 2
    ex = ag.examples[0]
    assert ex["ours"]["accepted"] > 0 and ex["peer"]["token_ids"] == []


def test_load_streams_orders_by_workload_then_index(tmp_path):
    path = tmp_path / "streams.jsonl"
    rows = [
        {"workload": "template", "id": "t1", "index": 1, "prompt_ids": [1], "output_ids": [2]},
        {"workload": "code_edit", "id": "c0", "index": 0, "prompt_ids": [3], "output_ids": [4]},
        {"workload": "template", "id": "t0", "index": 0, "prompt_ids": [5], "output_ids": [6]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    assert [s.id for s in G.load_streams(path)] == ["t0", "t1", "c0"]
    assert [s.id for s in G.load_streams(path, ["code_edit", "template"])] == ["c0", "t0", "t1"]
    assert [s.id for s in G.load_streams(path, ["code_edit"])] == ["c0"]


def _result(accepted_per_step: float, us_per_token: float, runs: list[float] | None = None) -> dict:
    return {"overall": {"accepted_per_step": accepted_per_step, "us_per_token": us_per_token,
                        "us_per_token_runs": runs or [us_per_token]}}


def test_verdict_applies_the_issue_thresholds():
    assert G.verdict({"ours": _result(1.0, 1.0)}) is None
    assert G.verdict({"ours": _result(0.985, 0.9), "peer": _result(1.0, 1.0)}).endswith("PASS")
    assert G.verdict({"ours": _result(0.97, 0.9), "peer": _result(1.0, 1.0)}).endswith("FAIL")  # acceptance
    assert G.verdict({"ours": _result(1.0, 1.1), "peer": _result(1.0, 1.0)}).endswith("FAIL")  # time


def test_time_ratio_pairs_runs_so_that_shared_noise_cancels():
    # A noisy machine: both drafters slow in run 2; ours is 10% faster in every run.
    ours = _result(1.0, 0, [0.9, 1.8, 0.9])["overall"]
    peer = _result(1.0, 0, [1.0, 2.0, 1.0])["overall"]
    assert G.paired_time_ratio(ours, peer) == pytest.approx(0.9)


def test_summaries_refuse_runs_that_disagree():
    a = [G.StreamStats("w", steps=3, accepted=2, emitted=5, ns=100)]
    b = [G.StreamStats("w", steps=3, accepted=1, emitted=5, ns=100)]
    with pytest.raises(RuntimeError):
        G.summarize_runs([a, b], ["w"])
    summary = G.summarize_runs([a, [G.StreamStats("w", steps=3, accepted=2, emitted=5, ns=300)]], ["w"])
    assert summary["w"]["us_per_token"] == pytest.approx((100 + 300) / 2 / 5 / 1e3)
