"""The request trace: one JSON line per finished request, the ranker's
training data.

The server appends a ``TraceRecord`` when a request finishes: the features it
computed at arrival (so training sees exactly what the scheduler saw, under a
``feature_version``), the output length the served model really produced,
and the timings. JSON lines because a trace is appended to by a running
server and read by scripts: a crash loses at most the line being written, and
a bad line is reported as ``file:line`` and can be skipped.

Prompts are stored only as a digest (``prompt_digest``): enough to find
duplicates and join with a benchmark's prompts, without putting user text in
a log file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import IO, Iterable, Sequence, Union

import numpy as np

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


class TraceError(ValueError):
    """A bad trace record, line or path; the message names which."""


def prompt_digest(token_ids: Sequence[int]) -> str:
    """Hex sha256 of the prompt token ids packed as little-endian int64
    (int64 so any vocabulary fits; numpy packs a long prompt in microseconds)."""
    packed = np.asarray(token_ids, dtype="<i8")
    if packed.ndim != 1:
        raise TraceError(f"prompt token ids must be one sequence, got shape {packed.shape}")
    return hashlib.sha256(packed.tobytes()).hexdigest()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_nonneg_int(name: str, value: object) -> None:
    if not _is_int(value) or value < 0:
        raise TraceError(f"{name} must be a non-negative int, got {value!r}")


def _check_time(name: str, value: object) -> None:
    if not _is_number(value):
        raise TraceError(f"{name} must be a finite number of unix seconds, got {value!r}")


@dataclass(frozen=True)
class TraceRecord:
    """One finished request. ``output_tokens`` is what the served model
    generated; with ``finish_reason`` "length" it is a lower bound of what it
    would have said (cut at ``max_new_tokens``). Times are unix seconds;
    ``first_token_time`` is None when no token was produced."""

    rid: str
    prompt_sha: str
    feature_version: int
    features: list[float]
    prompt_tokens: int
    output_tokens: int
    finish_reason: str
    max_new_tokens: int | None
    arrival_time: float
    first_token_time: float | None
    finish_time: float

    def __post_init__(self) -> None:
        for name in ("rid", "prompt_sha", "finish_reason"):
            if not isinstance(getattr(self, name), str):
                raise TraceError(f"{name} must be a string, got {getattr(self, name)!r}")
        _check_nonneg_int("feature_version", self.feature_version)
        _check_nonneg_int("prompt_tokens", self.prompt_tokens)
        _check_nonneg_int("output_tokens", self.output_tokens)
        if self.max_new_tokens is not None:
            _check_nonneg_int("max_new_tokens", self.max_new_tokens)
        if not isinstance(self.features, list) or not all(_is_number(x) for x in self.features):
            raise TraceError("features must be a list of finite numbers")
        _check_time("arrival_time", self.arrival_time)
        _check_time("finish_time", self.finish_time)
        if self.first_token_time is not None:
            _check_time("first_token_time", self.first_token_time)

    def to_json(self) -> str:
        """One line of JSON (no newline)."""
        return json.dumps(asdict(self), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, line: str) -> "TraceRecord":
        """Parse one line; TraceError says what is wrong (the reader adds
        file:line). Keys this version does not know are ignored, so an older
        reader still reads a newer trace."""
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TraceError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise TraceError(f"expected a JSON object, got {type(obj).__name__}")
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in obj]
        if missing:
            raise TraceError(f"missing field(s) {', '.join(missing)}")
        return cls(**{n: obj[n] for n in names})


class TraceWriter:
    """Appends records to a JSONL file, one flushed line each (line-buffered),
    so a reader or a crash sees whole lines. Safe to share between threads."""

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise TraceError(f"trace path {self.path} is a directory; give a file path")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] | None = open(self.path, "a", encoding="utf-8", buffering=1)
        except OSError as exc:
            raise TraceError(f"cannot open trace file {self.path} for appending: {exc}") from exc
        self._lock = threading.Lock()

    def write(self, record: TraceRecord) -> None:
        line = record.to_json() + "\n"
        with self._lock:
            if self._file is None:
                raise TraceError(f"trace writer for {self.path} is closed")
            self._file.write(line)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _as_paths(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    """One path or many (a bare str is one path, not its characters)."""
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    return [Path(p) for p in paths]


def read_trace_file(path: PathLike, *, skip_bad: bool = False) -> list[TraceRecord]:
    """Records of one file in file order; blank lines are skipped. A malformed
    line raises TraceError naming ``file:line``, or with ``skip_bad`` is
    counted, logged and skipped (a line cut short by a crash)."""
    path = Path(path)
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"cannot read trace file {path}: {exc.strerror or exc}") from exc
    records: list[TraceRecord] = []
    bad = 0
    with handle:
        try:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    records.append(TraceRecord.from_json(line))
                except TraceError as exc:
                    if not skip_bad:
                        raise TraceError(f"{path}:{lineno}: {exc}") from None
                    bad += 1
        except UnicodeDecodeError as exc:
            raise TraceError(f"{path}: not UTF-8 text ({exc.reason})") from None
    if bad:
        logger.warning("%s: skipped %d malformed trace line(s)", path, bad)
    return records


def read_traces(paths: PathLike | Iterable[PathLike], *, skip_bad: bool = False) -> list[TraceRecord]:
    """Records of all files, file after file (see ``read_trace_file``)."""
    records: list[TraceRecord] = []
    for path in _as_paths(paths):
        records.extend(read_trace_file(path, skip_bad=skip_bad))
    return records
