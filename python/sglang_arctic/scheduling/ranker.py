"""The output-length ranker: a LightGBM LambdaRank model over ``features``.

Convention: a HIGHER score means a predicted SHORTER output, i.e. schedule
earlier. Training labels follow it (``relevance_label``: shorter = more
relevant), so LambdaRank's "most relevant first" is shortest-job-first.

File format. A ranker file is one header line followed by the LightGBM model
text, unchanged::

    #sglang_arctic.length_ranker {"feature_version": 1, "num_features": 297, ...}
    tree
    version=v4
    ...

LightGBM's own text already records the feature names (checked against
``FEATURE_NAMES``) but has no place for our ``FEATURE_VERSION``, which must
travel with the model: a change in how a feature is computed keeps the names
and would silently skew every score. The header line carries it. It is one
file (one thing to commit and point the server at), still plain text, and
``LengthRanker.load`` refuses a file without the header instead of guessing.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import threading
from pathlib import Path
from typing import Any, Union

import numpy as np

from sglang_arctic.scheduling.features import FEATURE_NAMES, FEATURE_VERSION, NUM_FEATURES

HEADER_PREFIX = "#sglang_arctic.length_ranker "

NUM_LABELS = 31
"""Relevance levels 0..30: the most LightGBM accepts without a custom
``label_gain`` (train_ranker passes a linear one of this length), and 31
half-octave buckets span 1 to 32768 output tokens."""

MAX_LABEL = NUM_LABELS - 1

BUCKETS_PER_OCTAVE = 2
"""Length buckets per doubling of the output. Log-spaced because what matters
for scheduling is the ratio between two jobs' lengths (5 vs 10 tokens is as
different as 500 vs 1000), and model outputs span 1 to ~2048 tokens; half an
octave (a factor of ~1.41) gives 23 levels over that range, fine enough that
most pairs of differing length are not ties, coarse enough that sampling noise
within a bucket does not count as a ranking error."""

PathLike = Union[str, "os.PathLike[str]"]


class RankerError(RuntimeError):
    """A ranker file that cannot be used; the message names the file and what
    is wrong with it."""


def length_bucket(output_tokens: int, *, per_octave: int = BUCKETS_PER_OCTAVE,
                  num_buckets: int = NUM_LABELS) -> int:
    """0 for 0 or 1 token, one more per factor ``2**(1/per_octave)``, capped
    at ``num_buckets - 1`` (see ``BUCKETS_PER_OCTAVE`` for why log-spaced)."""
    if isinstance(output_tokens, bool) or not isinstance(output_tokens, (int, np.integer)) \
            or output_tokens < 0:
        raise ValueError(f"output_tokens must be a non-negative int, got {output_tokens!r}")
    if per_octave < 1 or num_buckets < 1:
        raise ValueError(f"per_octave and num_buckets must be >= 1, got {per_octave}, {num_buckets}")
    if output_tokens <= 1:
        return 0
    # The epsilon keeps exact powers of 2**(1/per_octave) in their own bucket.
    return min(num_buckets - 1, int(math.floor(per_octave * math.log2(output_tokens) + 1e-9)))


def relevance_label(output_tokens: int) -> int:
    """LambdaRank relevance 0..30: ``MAX_LABEL`` for the shortest outputs,
    lower for longer ones (higher relevance = schedule earlier)."""
    return MAX_LABEL - length_bucket(output_tokens)


def _import_lightgbm():
    """lightgbm is needed only to use a ranker; the message says how to get it."""
    try:
        import lightgbm
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RankerError(f"the length ranker needs the lightgbm package ({exc})") from exc
    return lightgbm


def _parse_header(line: str, source: str) -> dict[str, Any]:
    if not line.startswith(HEADER_PREFIX):
        if line.strip() == "tree":
            raise RankerError(
                f"{source}: a plain LightGBM model without the sglang_arctic header line "
                f"(its feature version is unknown); train it with "
                f"python -m sglang_arctic.scheduling.train_ranker")
        raise RankerError(
            f"{source}: not a length-ranker file (first line should start with "
            f"{HEADER_PREFIX.strip()!r}, got {line[:60]!r})")
    try:
        header = json.loads(line[len(HEADER_PREFIX):])
    except json.JSONDecodeError as exc:
        raise RankerError(f"{source}: header line is not valid JSON ({exc.msg})") from None
    if not isinstance(header, dict):
        raise RankerError(f"{source}: header must be a JSON object, got {header!r}")
    version = header.get("feature_version")
    if version != FEATURE_VERSION:
        raise RankerError(
            f"{source}: trained on feature version {version!r}, this build computes "
            f"feature version {FEATURE_VERSION}; retrain the ranker on a new trace")
    return header


def _check_features(booster: Any, source: str) -> None:
    count = booster.num_feature()
    if count != NUM_FEATURES:
        raise RankerError(
            f"{source}: model uses {count} features, this build computes {NUM_FEATURES} "
            f"(feature version {FEATURE_VERSION})")
    names = booster.feature_name()
    if tuple(names) != FEATURE_NAMES:
        i = next(i for i, (a, b) in enumerate(zip(names, FEATURE_NAMES)) if a != b)
        raise RankerError(
            f"{source}: feature {i} is named {names[i]!r} in the model but "
            f"{FEATURE_NAMES[i]!r} in this build")


_PREDICT_RAW_SCORE = 1  # C_API_PREDICT_RAW_SCORE in LightGBM's c_api.h
_DTYPE_FLOAT64 = 1  # C_API_DTYPE_FLOAT64


class _SingleRowScorer:
    """LightGBM's C fast path for one row (``LGBM_BoosterPredictForMatSingleRow
    Fast``): the prediction setup is done once here, so a call costs a few
    microseconds instead of the ~50-100 us ``Booster.predict`` spends
    re-validating its arguments and data on every call. It owns its own
    booster handle, loaded from the model text through the public C API.

    The only non-public piece is where lightgbm keeps its loaded library
    (``lightgbm.basic._LIB``); ``create`` returns None when that is not
    there, and ``score_one`` then falls back to ``Booster.predict``.
    """

    def __init__(self, lib: Any, booster_handle: ctypes.c_void_p,
                 fast_handle: ctypes.c_void_p) -> None:
        self._lib = lib
        self._booster_handle = booster_handle
        self._fast_handle = fast_handle
        proto = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                 ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_double))
        self._predict = proto(("LGBM_BoosterPredictForMatSingleRowFast", lib))
        self._row = np.zeros(NUM_FEATURES, dtype=np.float64)
        self._out = np.zeros(1, dtype=np.float64)
        self._out_len = ctypes.c_int64()
        self._row_ptr = self._row.ctypes.data_as(ctypes.c_void_p)
        self._out_ptr = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._lock = threading.Lock()  # one row buffer and fast config per scorer

    @classmethod
    def create(cls, model_text: str) -> "_SingleRowScorer | None":
        try:
            from lightgbm.basic import _LIB as lib
        except ImportError:
            return None
        booster, iterations, fast = ctypes.c_void_p(), ctypes.c_int(), ctypes.c_void_p()
        if lib.LGBM_BoosterLoadModelFromString(
                ctypes.c_char_p(model_text.encode("utf-8")), ctypes.byref(iterations),
                ctypes.byref(booster)) != 0:
            return None
        if lib.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster, ctypes.c_int(_PREDICT_RAW_SCORE), ctypes.c_int(0), ctypes.c_int(-1),
                ctypes.c_int(_DTYPE_FLOAT64), ctypes.c_int32(NUM_FEATURES),
                ctypes.c_char_p(b"num_threads=1"), ctypes.byref(fast)) != 0:
            lib.LGBM_BoosterFree(booster)
            return None
        return cls(lib, booster, fast)

    def score(self, row: np.ndarray) -> float:
        with self._lock:
            self._row[:] = row
            if self._predict(self._fast_handle, self._row_ptr, ctypes.byref(self._out_len),
                             self._out_ptr) != 0:
                last_error = ctypes.CFUNCTYPE(ctypes.c_char_p)(("LGBM_GetLastError", self._lib))
                message = (last_error() or b"").decode("utf-8", "replace")
                raise RankerError(f"LightGBM single-row prediction failed: {message}")
            return float(self._out[0])

    def __del__(self) -> None:
        try:
            self._lib.LGBM_FastConfigFree(self._fast_handle)
            self._lib.LGBM_BoosterFree(self._booster_handle)
        except Exception:  # interpreter shutdown: the library may be gone
            pass


class LengthRanker:
    """A validated ranker: scores requests so that higher = shorter output.

    Scoring uses one thread (``num_threads=1``): it runs inside the scheduler
    loop on a few rows at a time, where an OpenMP pool per call would cost
    more than the trees. ``score_one`` takes LightGBM's single-row fast path
    (``_SingleRowScorer``), ``score`` the ordinary batch prediction.
    """

    def __init__(self, booster: Any, *, source: str = "<memory>",
                 header: dict[str, Any] | None = None) -> None:
        _check_features(booster, source)
        self.booster = booster
        self.source = source
        self.header = dict(header or {"feature_version": FEATURE_VERSION})
        self._fast = _SingleRowScorer.create(booster.model_to_string())

    @property
    def uses_fast_path(self) -> bool:
        """Whether ``score_one`` uses LightGBM's single-row fast path."""
        return self._fast is not None

    # -- files ---------------------------------------------------------------

    @classmethod
    def from_string(cls, text: str, *, source: str = "<string>") -> "LengthRanker":
        """Parse the file format described in the module docstring."""
        first, _, model_text = text.partition("\n")
        header = _parse_header(first, source)
        lightgbm = _import_lightgbm()
        try:
            booster = lightgbm.Booster(model_str=model_text)
        except Exception as exc:  # LightGBMError, or ValueError on odd input
            raise RankerError(f"{source}: not a LightGBM model ({exc})") from None
        return cls(booster, source=source, header=header)

    @classmethod
    def load(cls, path: PathLike) -> "LengthRanker":
        """Read and validate a ranker file: RankerError if it is missing,
        unreadable, not a ranker/LightGBM model, or built for other features."""
        path = Path(path)
        if not path.exists():
            raise RankerError(f"ranker model {path}: no such file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RankerError(f"ranker model {path}: cannot read it ({exc})") from None
        return cls.from_string(text, source=str(path))

    def to_string(self) -> str:
        header = {**self.header, "feature_version": FEATURE_VERSION, "num_features": NUM_FEATURES}
        return HEADER_PREFIX + json.dumps(header, sort_keys=True) + "\n" + \
            self.booster.model_to_string()

    def save(self, path: PathLike) -> int:
        """Write the ranker file; returns its size in bytes."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.to_string().encode("utf-8")
        path.write_bytes(data)
        return len(data)

    # -- scoring ---------------------------------------------------------------

    def score(self, features: np.ndarray) -> np.ndarray:
        """Scores (n,) for a (n, NUM_FEATURES) matrix; higher = shorter output."""
        matrix = np.asarray(features)
        if matrix.ndim != 2 or matrix.shape[1] != NUM_FEATURES:
            raise ValueError(
                f"features must have shape (n, {NUM_FEATURES}), got {matrix.shape}")
        if matrix.shape[0] == 0:
            return np.zeros(0, dtype=np.float64)
        return np.asarray(self.booster.predict(matrix, raw_score=True, num_threads=1),
                          dtype=np.float64)

    def score_one(self, vec: np.ndarray) -> float:
        """Score of one feature vector (NUM_FEATURES,)."""
        row = np.asarray(vec)
        if row.shape != (NUM_FEATURES,):
            raise ValueError(f"feature vector must have shape ({NUM_FEATURES},), got {row.shape}")
        if self._fast is not None:
            return self._fast.score(row)
        return float(self.booster.predict(row.reshape(1, NUM_FEATURES), raw_score=True,
                                          num_threads=1)[0])
