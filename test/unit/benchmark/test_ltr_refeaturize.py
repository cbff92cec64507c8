"""benchmark/ltr_schedule.py refeaturize: features recomputed from the prompts a
trace was recorded on, checked against the recorded prompt digest."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[3]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

from benchmark import datasets as D  # noqa: E402
from benchmark import ltr_schedule as L  # noqa: E402
from sglang_arctic.scheduling.features import FEATURE_VERSION, RequestInfo, featurize  # noqa: E402
from sglang_arctic.scheduling.trace import TraceRecord, TraceWriter, prompt_digest, read_traces  # noqa: E402


class _CharTokenizer:
    """One token per character: enough to check digests and decoding."""

    def __call__(self, text):
        return {"input_ids": [ord(c) for c in text]}

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


PROMPTS = [D.Prompt("sharegpt:a", "Say hi in one word.", 19, 64),
           D.Prompt("sharegpt:b", "Write a long essay about rivers.", 32, 64)]


def _record(rid: str, text: str, output_tokens: int) -> TraceRecord:
    return TraceRecord(rid=rid, prompt_sha=prompt_digest([ord(c) for c in text]), feature_version=0,
                       features=[0.0], prompt_tokens=len(text), output_tokens=output_tokens,
                       finish_reason="stop", max_new_tokens=64, arrival_time=1.0,
                       first_token_time=1.5, finish_time=2.0)


@pytest.fixture
def patched(monkeypatch):
    import transformers

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda path: _CharTokenizer())
    monkeypatch.setattr(L, "load_prompts", lambda args, model_path, tokenizer=None: list(PROMPTS))


def _run(tmp_path: Path, records: list[TraceRecord]) -> tuple[int, Path]:
    trace, out = tmp_path / "trace.jsonl", tmp_path / "out.jsonl"
    with TraceWriter(trace) as w:
        for r in records:
            w.write(r)
    rc = L.main(["refeaturize", "--dataset", "sharegpt", "--model-path", "unused",
                 "--trace", str(trace), "--out", str(out)])
    return rc, out


def test_refeaturize_recomputes_features_and_keeps_the_rest(tmp_path, patched):
    rc, out = _run(tmp_path, [_record("warmup-rid", "x", 1),
                              _record("sharegpt:a#0", PROMPTS[0].text, 3),
                              _record("sharegpt:b#1", PROMPTS[1].text, 64)])
    assert rc == 0
    got = read_traces(out)
    assert [r.rid for r in got] == ["sharegpt:a#0", "sharegpt:b#1"]  # the warm-up is dropped
    for r, prompt in zip(got, PROMPTS):
        # greedy, as the scheduler sees it: SGLang stores temperature 0 as 1.0
        want = featurize(RequestInfo(prompt.text, len(prompt.text), 64, 1.0, 0))
        assert r.feature_version == FEATURE_VERSION
        assert r.features == pytest.approx(want.tolist())
    assert [r.output_tokens for r in got] == [3, 64]


def test_refeaturize_refuses_a_prompt_that_does_not_match_its_digest(tmp_path, patched):
    rc, _ = _run(tmp_path, [_record("sharegpt:a#0", "another prompt", 3)])
    assert rc == 1


def test_refeaturize_writes_a_fresh_file(tmp_path, patched):
    (tmp_path / "out.jsonl").write_text(_record("sharegpt:b#9", "old", 1).to_json() + "\n")
    rc, out = _run(tmp_path, [_record("sharegpt:a#0", PROMPTS[0].text, 3)])
    assert rc == 0
    assert [r.rid for r in read_traces(out)] == ["sharegpt:a#0"]
