"""Train the shipped length ranker and measure Kendall's tau on held-out prompts, per workload.

Input: a trace recorded by ``benchmark/ltr_schedule.py traces`` (its request ids are
``<dataset>:<prompt id>#<n>``, so each record's workload is known). Records are put
in arrival order and cut into groups of ``--group-size`` co-arriving requests;
every ``--holdout-every``-th group is held out (whole groups, so no list is seen
half in training). The ranker is trained on the rest only, and the held-out
records are scored per workload (all, sharegpt, short) next to the two naive
orders. The model written with ``--out`` is the one measured::

    .venv/bin/python -m benchmark.ltr_ranker --trace benchmark/results/ltr/train_mixed.jsonl \\
        --out python/sglang_arctic/scheduling/default_ranker.txt \\
        --json benchmark/results/ltr/ranker_tau.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from sglang_arctic.scheduling.ranker import LengthRanker
from sglang_arctic.scheduling.trace import TraceWriter, read_traces
from sglang_arctic.scheduling.train_ranker import TrainParams, evaluate, load_dataset, train

PAPER_TAU_SHAREGPT = 0.52  # arXiv 2408.15792, OPT-125M ranker, ShareGPT, Llama-3-8B outputs


def workload(rid: str) -> str:
    return rid.split(":", 1)[0]


def split(records, group_size: int, holdout_every: int):
    """(train, held-out) records: consecutive groups in arrival order, every k-th held out."""
    records = sorted(records, key=lambda r: (r.arrival_time, r.rid))
    train_records, held = [], []
    for g in range(0, len(records), group_size):
        (held if (g // group_size) % holdout_every == holdout_every - 1 else train_records).extend(
            records[g:g + group_size])
    return train_records, held


def write(path: Path, records) -> Path:
    with TraceWriter(path) as w:
        for r in records:
            w.write(r)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trace", required=True)
    p.add_argument("--out", help="ranker file to write (trained on the train split)")
    p.add_argument("--model", help="evaluate this ranker on every record of --trace instead "
                   "(a trace of prompts it was not trained on, e.g. a benchmark run's)")
    p.add_argument("--group-size", type=int, default=32)
    p.add_argument("--holdout-every", type=int, default=5, help="hold out every k-th group (k=5: 20%%)")
    p.add_argument("--num-rounds", type=int, default=TrainParams.num_rounds)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    # Requests the benchmark sent carry "#"; anything else (warm-up) is left out.
    if bool(args.out) == bool(args.model):
        p.error("give exactly one of --out (train and evaluate) and --model (evaluate)")
    records = [r for r in read_traces([args.trace]) if "#" in r.rid and r.finish_reason != "abort"]
    work = Path(tempfile.mkdtemp(prefix="ltr_ranker_"))
    if args.model:
        train_records, held = [], records
        ranker = LengthRanker.load(args.model)
        size = Path(args.model).stat().st_size
    else:
        train_records, held = split(records, args.group_size, args.holdout_every)
        train_data = load_dataset([write(work / "train.jsonl", train_records)],
                                  group_size=args.group_size)
        ranker = train(train_data, TrainParams(num_rounds=args.num_rounds))
        size = ranker.save(args.out)
        print(f"ranker: {args.out} ({size / 1024:.1f} KiB)", file=sys.stderr)
    print(f"{len(records)} records: train {len(train_records)}, evaluated {len(held)}", file=sys.stderr)

    results = {}
    subsets = {"all": held, **{w: [r for r in held if workload(r.rid) == w]
                              for w in sorted({workload(r.rid) for r in held})}}
    for name, subset in subsets.items():
        if len(subset) < 2:
            continue
        # One group per subset: tau over every held-out pair of that workload.
        data = load_dataset([write(work / f"held_{name}.jsonl", subset)], group_size=len(subset))
        ev = evaluate(ranker, data)
        results[name] = {"records": len(subset),
                         **{row.name: round(row.tau, 3) for row in ev.rows},
                         "mean_output_tokens": round(float(data.output_tokens.mean()), 1),
                         "hit_max_tokens": int(sum(r.finish_reason == "length" for r in subset))}
    print("| held-out prompts | records | ranker | shorter prompt first | random |")
    print("|---|---|---|---|---|")
    for name, row in results.items():
        print(f"| {name} | {row['records']} | {row['ranker']:.3f} | {row['prompt_length']:.3f} | "
              f"{row['random']:.3f} |")
    print(f"(paper: {PAPER_TAU_SHAREGPT} on ShareGPT with an OPT-125M ranker)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "command": " ".join(sys.argv), "trace": args.trace, "train_records": len(train_records),
            "group_size": args.group_size, "holdout_every": args.holdout_every,
            "model_bytes": size, "tau": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
