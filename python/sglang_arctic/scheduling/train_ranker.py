"""Train the output-length ranker from request traces.

    python -m sglang_arctic.scheduling.train_ranker --trace A.jsonl [--trace B.jsonl ...] \\
        --out ranker.txt [--group-size 32] [--holdout 0.2] [--seed 0] [--num-rounds 100] \\
        [--metrics-json metrics.json]

What is learned is an *order*, not a length: the scheduler only compares the
requests waiting together. So training data are lists of co-arriving requests
(each file's records in arrival order, cut into groups of ``--group-size``
consecutive ones, as in arXiv 2408.15792), labels are bucketed output lengths
(``ranker.relevance_label``) and the objective is LambdaRank over whole lists.
Groups, not records, are split into train and held-out sets, so no list is
seen half in training.

Evaluation is Kendall's tau-b between the score and -output_tokens on the
held-out records (1 = perfect shortest-first order), over the held-out set as
a whole and as a mean over its groups, next to two naive orders: shorter
prompt first and random. A ranker that does not beat "shorter prompt first"
is not worth scheduling with.

Records with finish_reason "abort" are skipped (their length says nothing
about the model); "length" records are kept with the length they reached,
which is a lower bound but already among the longest.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from sglang_arctic.scheduling.features import FEATURE_NAMES, FEATURE_VERSION, NUM_FEATURES
from sglang_arctic.scheduling.ranker import NUM_LABELS, LengthRanker, RankerError, relevance_label
from sglang_arctic.scheduling.trace import PathLike, TraceError, TraceRecord, read_trace_file

MIN_GROUP = 2
"""A group of one request has no pair to order; a trailing shorter group is kept."""


class TrainError(ValueError):
    """Data that cannot train or evaluate a ranker; the message says why."""


@dataclass(frozen=True)
class Dataset:
    """Records in groups: group ``g`` is rows ``starts[g]:starts[g + 1]``."""

    features: np.ndarray  # (n, NUM_FEATURES) float32
    output_tokens: np.ndarray  # (n,) int64
    prompt_tokens: np.ndarray  # (n,) int64
    starts: np.ndarray  # (groups + 1,) int64 row offsets
    group_size: int

    @property
    def num_records(self) -> int:
        return int(self.output_tokens.shape[0])

    @property
    def num_groups(self) -> int:
        return int(self.starts.shape[0] - 1)

    def group_sizes(self) -> np.ndarray:
        return np.diff(self.starts)

    def labels(self) -> np.ndarray:
        return np.array([relevance_label(int(n)) for n in self.output_tokens], dtype=np.int32)

    def subset(self, groups: Sequence[int]) -> "Dataset":
        """The dataset made of ``groups`` (indices), in that order."""
        rows = [np.arange(self.starts[g], self.starts[g + 1]) for g in groups]
        index = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        sizes = [int(self.starts[g + 1] - self.starts[g]) for g in groups]
        starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)
        return Dataset(self.features[index], self.output_tokens[index],
                       self.prompt_tokens[index], starts, self.group_size)


def _usable_records(path: PathLike, records: list[TraceRecord]) -> list[TraceRecord]:
    """Drop aborted requests; refuse records featurized by another version."""
    kept = []
    for r in records:
        if r.finish_reason == "abort":
            continue
        if r.feature_version != FEATURE_VERSION:
            raise TrainError(
                f"{path}: record {r.rid!r} has feature version {r.feature_version}, this "
                f"build trains on version {FEATURE_VERSION}; record a new trace")
        if len(r.features) != NUM_FEATURES:
            raise TrainError(
                f"{path}: record {r.rid!r} has {len(r.features)} features, "
                f"version {FEATURE_VERSION} has {NUM_FEATURES}")
        kept.append(r)
    return kept


def _group_offsets(count: int, group_size: int) -> list[int]:
    """Row offsets [0, size, 2 * size, ..., end] of consecutive groups; a
    trailing group shorter than MIN_GROUP is dropped."""
    offsets = list(range(0, count, group_size)) + [count]
    if len(offsets) >= 2 and offsets[-1] - offsets[-2] < MIN_GROUP:
        offsets.pop()
    return offsets


def load_dataset(paths: Iterable[PathLike], *, group_size: int = 32,
                 skip_bad: bool = False) -> Dataset:
    """Read traces into groups of co-arriving requests. Each file is grouped
    on its own (a group must be requests that waited in the same queue),
    in arrival order."""
    if group_size < MIN_GROUP:
        raise TrainError(f"group size must be >= {MIN_GROUP}, got {group_size}")
    features, outputs, prompts, starts = [], [], [], [0]
    for path in paths:
        records = _usable_records(path, read_trace_file(path, skip_bad=skip_bad))
        records.sort(key=lambda r: (r.arrival_time, r.rid))
        offsets = _group_offsets(len(records), group_size)
        records = records[:offsets[-1]]
        base = starts[-1]
        starts.extend(base + o for o in offsets[1:])
        features.extend(r.features for r in records)
        outputs.extend(r.output_tokens for r in records)
        prompts.extend(r.prompt_tokens for r in records)
    matrix = np.array(features, dtype=np.float32).reshape(len(features), NUM_FEATURES)
    return Dataset(matrix, np.array(outputs, dtype=np.int64), np.array(prompts, dtype=np.int64),
                   np.array(starts, dtype=np.int64), group_size)


def split_groups(num_groups: int, holdout: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, held-out) group indices by a seeded shuffle; at least one group
    each when ``holdout`` > 0."""
    if not 0.0 <= holdout < 1.0:
        raise TrainError(f"holdout must be in [0, 1), got {holdout}")
    need = 2 if holdout > 0 else 1
    if num_groups < need:
        raise TrainError(
            f"too few records: {num_groups} group(s); need at least {need} "
            f"({'one to train, one to hold out' if need == 2 else 'one to train'})")
    order = [int(g) for g in np.random.default_rng(seed).permutation(num_groups)]
    held = 0 if holdout == 0 else min(num_groups - 1, max(1, round(holdout * num_groups)))
    return sorted(order[held:]), sorted(order[:held])


@dataclass(frozen=True)
class TrainParams:
    """Model size and learning schedule. The defaults keep the model file
    around 100-200 KB (committable) and train in about a second on a few
    thousand records."""

    num_rounds: int = 100
    num_leaves: int = 15
    learning_rate: float = 0.1
    min_data_in_leaf: int = 20
    feature_fraction: float = 0.8
    lambda_l2: float = 1.0
    seed: int = 0
    num_threads: int = 0  # 0: LightGBM's default (all cores)
    log_every: int = 10  # 0: silent


def _lgb_params(p: TrainParams, group_size: int) -> dict:
    """LambdaRank over whole lists: the truncation level is the group size,
    since the scheduler uses the entire order, not just its top; the gains are
    linear in the label because LightGBM's default 2**label - 1 would make
    the shortest bucket outweigh all others together, teaching the model to
    find only the very shortest request of each list."""
    return {
        "objective": "lambdarank",
        "lambdarank_truncation_level": group_size,
        "label_gain": list(range(NUM_LABELS)),
        "metric": "ndcg",
        "eval_at": [group_size],
        "num_leaves": p.num_leaves,
        "learning_rate": p.learning_rate,
        "min_data_in_leaf": p.min_data_in_leaf,
        "feature_fraction": p.feature_fraction,
        "lambda_l2": p.lambda_l2,
        "seed": p.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": p.num_threads,
        "verbose": -1,
    }


def train(data: Dataset, params: TrainParams = TrainParams(), *,
          valid: Dataset | None = None) -> LengthRanker:
    """Fit a ranker on ``data``; ``valid`` is only logged (never used to
    choose the model, so the held-out figures stay honest)."""
    import lightgbm as lgb

    if data.num_groups < 1:
        raise TrainError("no training groups")
    lgb_params = _lgb_params(params, data.group_size)

    def as_lgb(d: Dataset, reference=None):
        return lgb.Dataset(d.features, label=d.labels(), group=d.group_sizes(),
                           feature_name=list(FEATURE_NAMES), reference=reference,
                           params={"verbose": -1}, free_raw_data=False)

    train_set = as_lgb(data)
    sets, names = [train_set], ["train"]
    if valid is not None and valid.num_groups:
        sets.append(as_lgb(valid, reference=train_set))
        names.append("heldout")
    callbacks = [lgb.log_evaluation(params.log_every)] if params.log_every > 0 else []
    booster = lgb.train(lgb_params, train_set, num_boost_round=params.num_rounds,
                        valid_sets=sets, valid_names=names, callbacks=callbacks)
    header = {"feature_version": FEATURE_VERSION, "group_size": data.group_size,
              "train_records": data.num_records, "num_rounds": params.num_rounds}
    return LengthRanker(booster, header=header)


# -- evaluation -------------------------------------------------------------------


@dataclass(frozen=True)
class OrderingScore:
    """Kendall's tau-b of one ordering against -output_tokens: over all
    held-out records, and the mean over groups (those where it is defined)."""

    name: str
    tau: float
    group_tau: float


@dataclass(frozen=True)
class Evaluation:
    records: int
    groups: int
    rows: tuple[OrderingScore, ...]

    def by_name(self, name: str) -> OrderingScore:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no ordering named {name!r}; have {[r.name for r in self.rows]}")

    def table(self) -> str:
        lines = [f"Kendall's tau (tau-b) of score vs. -output_tokens on {self.records} "
                 f"held-out records in {self.groups} groups:",
                 f"  {'ordering':<16}{'all records':>12}{'group mean':>12}"]
        for r in self.rows:
            lines.append(f"  {r.name:<16}{r.tau:>12.3f}{r.group_tau:>12.3f}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"heldout_records": self.records, "heldout_groups": self.groups,
                "tau": {r.name: {"all": _finite_or_none(r.tau),
                                 "group_mean": _finite_or_none(r.group_tau)}
                        for r in self.rows}}


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _tau(scores: np.ndarray, target: np.ndarray) -> float:
    from scipy.stats import kendalltau

    if scores.size < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: tau is undefined (nan)
        return float(kendalltau(scores, target).statistic)


def _ordering_score(name: str, scores: np.ndarray, data: Dataset) -> OrderingScore:
    target = -data.output_tokens.astype(np.float64)
    per_group = [_tau(scores[s:e], target[s:e]) for s, e in zip(data.starts[:-1], data.starts[1:])]
    defined = [t for t in per_group if math.isfinite(t)]
    group_tau = float(np.mean(defined)) if defined else float("nan")
    return OrderingScore(name, _tau(scores, target), group_tau)


def evaluate(ranker: LengthRanker, data: Dataset, *, seed: int = 0) -> Evaluation:
    """The ranker against "shorter prompt first" (score = -prompt_tokens) and
    a seeded random order, on ``data`` (the held-out groups)."""
    if data.num_records < 2:
        raise TrainError(f"need at least 2 held-out records to evaluate, got {data.num_records}")
    random_scores = np.random.default_rng(seed + 1).random(data.num_records)
    rows = (
        _ordering_score("ranker", ranker.score(data.features), data),
        _ordering_score("prompt_length", -data.prompt_tokens.astype(np.float64), data),
        _ordering_score("random", random_scores, data),
    )
    return Evaluation(data.num_records, data.num_groups, rows)


# -- CLI -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sglang_arctic.scheduling.train_ranker",
        description="Train the output-length ranker (LightGBM LambdaRank) on request traces.")
    p.add_argument("--trace", action="append", required=True, type=Path,
                   help="JSONL trace written by the server (repeatable)")
    p.add_argument("--out", required=True, type=Path, help="ranker file to write")
    p.add_argument("--group-size", type=int, default=32,
                   help="co-arriving requests per ranking list (default 32)")
    p.add_argument("--holdout", type=float, default=0.2,
                   help="share of groups held out for evaluation (default 0.2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-rounds", type=int, default=TrainParams.num_rounds)
    p.add_argument("--num-leaves", type=int, default=TrainParams.num_leaves)
    p.add_argument("--num-threads", type=int, default=0, help="0: all cores")
    p.add_argument("--log-every", type=int, default=10, help="rounds between progress lines")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed trace lines")
    p.add_argument("--metrics-json", type=Path, help="also write the figures here")
    return p


def run(args: argparse.Namespace) -> dict:
    """The CLI's work; returns the metrics dict (TrainError/TraceError on bad data)."""
    if args.num_rounds < 1:
        raise TrainError(f"--num-rounds must be >= 1, got {args.num_rounds}")
    data = load_dataset(args.trace, group_size=args.group_size, skip_bad=args.skip_bad)
    train_groups, held_groups = split_groups(data.num_groups, args.holdout, args.seed)
    train_data, held_data = data.subset(train_groups), data.subset(held_groups)
    print(f"{data.num_records} records in {data.num_groups} groups of up to {args.group_size}; "
          f"train {train_data.num_records} records ({len(train_groups)} groups), "
          f"held out {held_data.num_records} ({len(held_groups)} groups)")
    params = TrainParams(num_rounds=args.num_rounds, num_leaves=args.num_leaves, seed=args.seed,
                         num_threads=args.num_threads, log_every=args.log_every)
    ranker = train(train_data, params, valid=held_data if held_groups else None)
    size = ranker.save(args.out)
    ranker = LengthRanker.load(args.out)  # evaluate what was written
    print(f"model: {args.out} ({size} bytes, {size / 1024:.1f} KiB)")
    metrics = {"feature_version": FEATURE_VERSION, "group_size": args.group_size,
               "train_records": train_data.num_records, "model_bytes": size,
               "params": asdict(params)}
    if held_groups:
        evaluation = evaluate(ranker, held_data, seed=args.seed)
        print(evaluation.table())
        metrics.update(evaluation.to_dict())
    else:
        print("no held-out groups (--holdout 0): no evaluation")
    if args.metrics_json:
        args.metrics_json.parent.mkdir(parents=True, exist_ok=True)
        args.metrics_json.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        run(args)
    except (TrainError, TraceError, RankerError) as exc:
        print(f"train_ranker: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # --out or --metrics-json not writable
        print(f"train_ranker: error: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
