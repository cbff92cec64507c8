"""Scores for the waiting-queue order: the learned ranker and the benchmark oracle.

Engine-agnostic (no ``sglang`` import). A scorer maps one request to a float,
higher = predicted shorter output = serve earlier, or None when it cannot
score the request (which ``order.RankOrder`` then serves first-come-first-served).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Protocol, Sequence

import numpy as np

from sglang_arctic.config import ArcticConfig
from sglang_arctic.scheduling.features import RequestInfo, featurize
from sglang_arctic.scheduling.ranker import LengthRanker, RankerError
from sglang_arctic.scheduling.trace import TraceError, prompt_digest, read_traces

DEFAULT_RANKER = Path(__file__).with_name("default_ranker.txt")


class SchedulingSetupError(RuntimeError):
    """A scheduling option that cannot work (bad ranker or trace file); a startup error."""


@dataclass
class RequestView:
    """What the scorers and the trace see of one request; features computed once."""

    info: RequestInfo
    prompt_ids: Sequence[int]
    _features: Optional[np.ndarray] = field(default=None, repr=False)

    def features(self) -> np.ndarray:
        if self._features is None:
            self._features = featurize(self.info)
        return self._features


class RequestScorer(Protocol):
    def __call__(self, request: RequestView) -> Optional[float]: ...


class RankerScorer:
    """``--arctic-schedule ltr``: the LightGBM LambdaRank score of the request's features."""

    def __init__(self, ranker: LengthRanker) -> None:
        self.ranker = ranker

    def __call__(self, request: RequestView) -> Optional[float]:
        return self.ranker.score_one(request.features())


class OracleScorer:
    """``--arctic-schedule oracle``: minus the true output length recorded for the same
    prompt tokens (the mean, if the trace holds the prompt several times). Prompts the
    trace does not hold cannot be scored. Benchmarks only: it reads the future."""

    def __init__(self, lengths_by_digest: Dict[str, float]) -> None:
        self.lengths = lengths_by_digest

    @classmethod
    def from_traces(cls, paths: Sequence[str]) -> "OracleScorer":
        totals: Dict[str, list] = defaultdict(list)
        for record in read_traces(paths):
            if record.finish_reason != "abort":
                totals[record.prompt_sha].append(record.output_tokens)
        return cls({k: float(np.mean(v)) for k, v in totals.items()})

    def __call__(self, request: RequestView) -> Optional[float]:
        length = self.lengths.get(prompt_digest(request.prompt_ids))
        return None if length is None else -length


def ranker_path(config: ArcticConfig) -> Path:
    return Path(config.schedule_ranker) if config.schedule_ranker else DEFAULT_RANKER


def build_scorer(config: ArcticConfig) -> Optional[RequestScorer]:
    """The scorer ``config`` asks for (None for ``off``); SchedulingSetupError if it cannot be built."""
    try:
        if config.schedule == "ltr":
            return RankerScorer(LengthRanker.load(ranker_path(config)))
        if config.schedule == "oracle":
            scorer = OracleScorer.from_traces([config.schedule_oracle_trace])
            if not scorer.lengths:
                raise SchedulingSetupError(
                    f"--arctic-schedule-oracle-trace {config.schedule_oracle_trace}: no finished "
                    "requests in it"
                )
            return scorer
    except (RankerError, TraceError, OSError) as exc:
        raise SchedulingSetupError(f"--arctic-schedule {config.schedule}: {exc}") from exc
    return None


def check_startup(config: ArcticConfig) -> None:
    """Everything the scheduling options need, checked before the server starts."""
    build_scorer(config)
    if config.schedule_trace:
        path = Path(config.schedule_trace)
        if path.is_dir():
            raise SchedulingSetupError(f"--arctic-schedule-trace {path} is a directory")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            raise SchedulingSetupError(f"--arctic-schedule-trace {path}: cannot append: {exc}") from exc
