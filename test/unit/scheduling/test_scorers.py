"""Scorers and start-up checks: the oracle reads true lengths from a trace; bad
ranker or trace options are SchedulingSetupError naming the file."""

from __future__ import annotations

import pytest

from sglang_arctic.config import ArcticConfig
from sglang_arctic.scheduling.features import RequestInfo
from sglang_arctic.scheduling.scorers import (
    DEFAULT_RANKER,
    OracleScorer,
    RankerScorer,
    RequestView,
    SchedulingSetupError,
    build_scorer,
    check_startup,
)
from sglang_arctic.scheduling.trace import TraceRecord, TraceWriter, prompt_digest


def _record(ids, output_tokens, reason="stop"):
    return TraceRecord(rid=str(ids), prompt_sha=prompt_digest(ids), feature_version=0, features=[],
                       prompt_tokens=len(ids), output_tokens=output_tokens, finish_reason=reason,
                       max_new_tokens=None, arrival_time=0.0, first_token_time=None, finish_time=0.0)


def _view(ids, text="hello"):
    return RequestView(RequestInfo(prompt_text=text, prompt_tokens=len(ids), max_new_tokens=64,
                                   temperature=0.0, num_stop=0), ids)


def test_oracle_scores_minus_the_mean_recorded_length_and_skips_aborts(tmp_path):
    path = tmp_path / "t.jsonl"
    with TraceWriter(path) as w:
        for rec in (_record([1, 2], 10), _record([1, 2], 30), _record([3], 5),
                    _record([4], 7, reason="abort")):
            w.write(rec)
    oracle = OracleScorer.from_traces([str(path)])
    assert oracle(_view([1, 2])) == -20.0
    assert oracle(_view([3])) == -5.0
    assert oracle(_view([4])) is None  # only an aborted record: unknown
    assert oracle(_view([9, 9])) is None


def test_shipped_ranker_loads_and_scores_a_request():
    scorer = build_scorer(ArcticConfig(schedule="ltr"))
    assert isinstance(scorer, RankerScorer)
    short = scorer(_view([1] * 20, "<|im_start|>user\nAnswer yes or no: is 3 odd?<|im_end|>\n"))
    assert isinstance(short, float)
    assert DEFAULT_RANKER.stat().st_size < 1_000_000  # small enough to ship


def test_off_builds_no_scorer():
    assert build_scorer(ArcticConfig()) is None


@pytest.mark.parametrize("content", [None, "garbage\n"])
def test_bad_ranker_file_is_a_setup_error_naming_it(tmp_path, content):
    path = tmp_path / "ranker.txt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SchedulingSetupError, match=str(path)):
        check_startup(ArcticConfig(schedule="ltr", schedule_ranker=str(path)))


def test_oracle_trace_problems_are_setup_errors(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(SchedulingSetupError, match="no finished requests"):
        check_startup(ArcticConfig(schedule="oracle", schedule_oracle_trace=str(empty)))
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(SchedulingSetupError, match="bad.jsonl"):
        check_startup(ArcticConfig(schedule="oracle", schedule_oracle_trace=str(bad)))


def test_trace_path_must_be_appendable(tmp_path):
    with pytest.raises(SchedulingSetupError, match="is a directory"):
        check_startup(ArcticConfig(schedule_trace=str(tmp_path)))
    target = tmp_path / "new" / "trace.jsonl"
    check_startup(ArcticConfig(schedule_trace=str(target)))
    assert target.exists()
