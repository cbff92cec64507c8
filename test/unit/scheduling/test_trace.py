"""Request trace: record round trip, digest, writer, reader errors."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import struct

import numpy as np
import pytest

from sglang_arctic.scheduling.trace import (
    TraceError,
    TraceRecord,
    TraceWriter,
    prompt_digest,
    read_trace_file,
    read_traces,
)


def record(rid: str = "r1", **kw) -> TraceRecord:
    fields = dict(
        rid=rid, prompt_sha=prompt_digest([1, 2, 3]), feature_version=1,
        features=[0.0, 1.5, 0.125], prompt_tokens=3, output_tokens=17, finish_reason="stop",
        max_new_tokens=None, arrival_time=1_700_000_000.25, first_token_time=1_700_000_000.5,
        finish_time=1_700_000_001.0,
    )
    fields.update(kw)
    return TraceRecord(**fields)


def test_record_round_trips_through_one_json_line():
    original = record(max_new_tokens=128, first_token_time=None)
    line = original.to_json()
    assert "\n" not in line
    assert TraceRecord.from_json(line) == original


def test_float32_features_survive_the_round_trip_exactly():
    vec = np.array([0.1, 1 / 3, 12345.678], dtype=np.float32)
    original = record(features=vec.tolist())
    back = TraceRecord.from_json(original.to_json())
    assert np.array_equal(np.array(back.features, dtype=np.float32), vec)


def test_prompt_digest_is_sha256_of_little_endian_int64():
    expected = hashlib.sha256(struct.pack("<3q", 1, 2, 3)).hexdigest()
    assert prompt_digest([1, 2, 3]) == expected
    assert prompt_digest(np.array([1, 2, 3], dtype=np.int32)) == expected
    assert prompt_digest([]) == hashlib.sha256(b"").hexdigest()
    assert prompt_digest([1, 2, 4]) != expected


@pytest.mark.parametrize(
    "line,words",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"rid": "x"}', "missing field"),
    ],
)
def test_malformed_json_says_what_is_wrong(line, words):
    with pytest.raises(TraceError, match=words):
        TraceRecord.from_json(line)


@pytest.mark.parametrize(
    "field,bad",
    [("output_tokens", -1), ("output_tokens", "7"), ("prompt_tokens", True),
     ("features", [1.0, "x"]), ("arrival_time", None), ("rid", 5)],
)
def test_a_bad_field_value_is_named(field, bad):
    obj = json.loads(record().to_json())
    obj[field] = bad
    with pytest.raises(TraceError, match=field):
        TraceRecord.from_json(json.dumps(obj))


def test_unknown_keys_are_ignored_for_forward_compatibility():
    obj = json.loads(record().to_json())
    obj["added_later"] = 1
    assert TraceRecord.from_json(json.dumps(obj)) == record()


def test_writer_appends_flushed_lines_and_creates_parents(tmp_path):
    path = tmp_path / "a" / "b" / "trace.jsonl"
    writer = TraceWriter(path)
    writer.write(record("r1"))
    # Line-buffered: the line is on disk before close.
    assert path.read_text().count("\n") == 1
    writer.write(record("r2"))
    writer.close()
    with TraceWriter(path) as again:  # append, not truncate
        again.write(record("r3"))
    assert [r.rid for r in read_traces(path)] == ["r1", "r2", "r3"]


def test_writer_refuses_a_directory_and_writes_after_close(tmp_path):
    with pytest.raises(TraceError, match=re.escape(str(tmp_path))):
        TraceWriter(tmp_path)
    writer = TraceWriter(tmp_path / "t.jsonl")
    writer.close()
    with pytest.raises(TraceError, match="closed"):
        writer.write(record())


def test_reader_skips_blank_lines_and_reads_many_files(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(record("a1").to_json() + "\n\n   \n" + record("a2").to_json() + "\n")
    b.write_text(record("b1").to_json())  # no trailing newline
    assert [r.rid for r in read_traces([a, b])] == ["a1", "a2", "b1"]
    assert [r.rid for r in read_traces(str(a))] == ["a1", "a2"]  # a str is one path


def test_malformed_line_error_names_file_and_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(record("r1").to_json() + "\n\n" + '{"rid": "cut sh' + "\n"
                    + record("r2").to_json() + "\n")
    with pytest.raises(TraceError, match=re.escape(f"{path}:3: not valid JSON")):
        read_traces([path])
    assert [r.rid for r in read_trace_file(path, skip_bad=True)] == ["r1", "r2"]


def test_missing_trace_file_is_named(tmp_path):
    with pytest.raises(TraceError, match="nope.jsonl"):
        read_traces([tmp_path / "nope.jsonl"])


def test_records_are_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        record().rid = "other"  # type: ignore[misc]
