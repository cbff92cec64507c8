"""Length-scheduling benchmarks (issue 3): traces for the ranker, and queue-order runs.

``traces`` and ``run`` drive our real server over HTTP with real prompts
(``benchmark/datasets.py``), greedy, ``ignore_eos`` off:

``traces``: serve with ``--arctic-schedule-trace`` and send prompts at a fixed
concurrency; the trace file (one JSON line per finished request: ranker
features, output length, timing) is what ``sglang_arctic.scheduling.train_ranker``
trains on::

    .venv/bin/python -m benchmark.ltr_schedule traces --dataset mixed --num 800 \\
        --seed 101 --max-tokens 512 --out benchmark/results/ltr/train_traces.jsonl

``run``: the same prompts under each queue order, one server at a time, with
``--max-running-requests`` small enough that requests really queue. All
prompts arrive at once (a burst) or, with ``--rate``, as a Poisson process.
``fcfs`` and ``lpm`` are SGLang's ``--schedule-policy``; ``ltr`` is
``--arctic-schedule ltr`` (the default ranker unless ``--ranker``); ``oracle``
orders by the true output lengths, read from the trace of the first policy's
run (so ``fcfs`` runs first and always with a trace)::

    .venv/bin/python -m benchmark.ltr_schedule run --dataset sharegpt --num 300 \\
        --max-tokens 512 --max-running 8 --policies fcfs,lpm,ltr,oracle \\
        --json benchmark/results/ltr/burst_sharegpt.json

``refeaturize``: after a change to the ranker's features (``FEATURE_VERSION``),
recompute a trace's features from the prompts it was recorded on (the same
dataset arguments as its ``traces`` run; each prompt is checked against the
record's prompt digest), so the ranker can be retrained without serving the
prompts again::

    .venv/bin/python -m benchmark.ltr_schedule refeaturize --dataset mixed --num 800 \
        --seed 101 --max-tokens 512 --trace benchmark/results/ltr/train_traces.jsonl \
        --out /tmp/train_traces_v2.jsonl

Reported per policy: mean and p90 end-to-end latency, mean TTFT, output
throughput, the longest wait of any request (its TTFT: time from sending to
the first token), and the share of the oracle's mean-latency reduction over
FCFS that the policy captures, ``(FCFS - X) / (FCFS - oracle)``.
This is a benchmark: it checks nothing; it exits non-zero only when a server
failed to start or requests failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):
    _HERE = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    sys.path.insert(0, str(_HERE.parent))

from benchmark import datasets as D  # noqa: E402
from benchmark import side_by_side as S  # noqa: E402

POLICY_FLAGS = {
    "fcfs": ["--schedule-policy", "fcfs"],
    "lpm": ["--schedule-policy", "lpm"],
    "ltr": ["--schedule-policy", "fcfs", "--arctic-schedule", "ltr"],
    "oracle": ["--schedule-policy", "fcfs", "--arctic-schedule", "oracle"],
}
# Long bursts on a CPU: no request may time out in the queue or on the client. The
# age bound is off too: in a burst every request arrives at t=0, so once the burst
# outlasts it every waiting request is promoted and the order becomes FCFS; the
# starvation rule (rounds) stays at its default, and the longest wait is reported.
SERVING_FLAGS = ["--arctic-queue-timeout", "0", "--arctic-max-queued-requests", "0",
                 "--arctic-schedule-max-wait", "0"]


def log(message: str) -> None:
    print(f"[ltr_schedule {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class PolicySummary:
    policy: str
    requests: int
    failed: int
    duration_s: float
    output_tokens: int
    output_tok_s: float
    latency_mean_s: float
    latency_p90_s: float
    ttft_mean_s: float
    longest_wait_s: float  # the largest TTFT: the longest any request waited to start
    hit_max_tokens: int
    oracle_share: float | None = None  # (FCFS - X) / (FCFS - oracle) of mean latency


def summarize(policy: str, duration: float, results: Sequence[S.RequestResult]) -> PolicySummary:
    ok = [r for r in results if r.ok]
    latency = [r.latency_s for r in ok]
    ttft = [r.ttft_s for r in ok]
    tokens = sum(r.completion_tokens for r in ok)
    return PolicySummary(
        policy=policy, requests=len(results), failed=len(results) - len(ok), duration_s=duration,
        output_tokens=tokens, output_tok_s=tokens / duration if duration else float("nan"),
        latency_mean_s=S._mean(latency), latency_p90_s=S.percentile(latency, 90),
        ttft_mean_s=S._mean(ttft), longest_wait_s=max(ttft, default=float("nan")),
        hit_max_tokens=sum(r.completion_tokens >= r.requested_tokens for r in ok),
    )


def oracle_shares(summaries: list[PolicySummary]) -> None:
    by = {s.policy: s for s in summaries}
    if "fcfs" not in by or "oracle" not in by:
        return
    gap = by["fcfs"].latency_mean_s - by["oracle"].latency_mean_s
    for s in summaries:
        if gap > 0:
            s.oracle_share = (by["fcfs"].latency_mean_s - s.latency_mean_s) / gap


async def send_all(base_url: str, label: str, prompts: Sequence[D.Prompt], max_tokens: int,
                   rate: float | None, seed: int, timeout: float) -> tuple[float, list[S.RequestResult]]:
    """Open loop: every prompt is sent at its arrival time (all at t=0 for a burst)."""
    import aiohttp

    rng = random.Random(seed)
    arrivals, t = [], 0.0
    for _ in prompts:
        arrivals.append(t)
        if rate:
            t += rng.expovariate(rate)
    done = [0]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout),
                                     connector=connector) as session:
        t0 = time.perf_counter()

        async def one(i: int, prompt: D.Prompt, at: float) -> S.RequestResult:
            await asyncio.sleep(max(0.0, at - (time.perf_counter() - t0)))
            r = await S.send_request(session, base_url, prompt, max_tokens, t0, ignore_eos=False,
                                     rid=f"{prompt.id}#{i}")
            done[0] += 1
            if not r.ok:
                log(f"{label}: {r.prompt_id} failed: {r.error}")
            return r

        async def progress() -> None:
            while done[0] < len(prompts):
                await asyncio.sleep(30)
                log(f"{label}: {done[0]}/{len(prompts)} done, {time.perf_counter() - t0:.0f} s")

        reporter = asyncio.create_task(progress())
        results = await asyncio.gather(*(one(i, p, a) for i, (p, a) in enumerate(zip(prompts, arrivals))))
        reporter.cancel()
        return time.perf_counter() - t0, list(results)


def serve(flags: list[str], model_path: str, log_dir: str | None, timeout: float):
    spec = S.build_system("arctic", model_path, flags, cpu=not S.cuda_usable())
    port = S.pick_port()
    log(f"starting `{shlex.join([*spec.launcher, *spec.argv, '--port', str(port)])}`")
    return S.start_server(spec, port, timeout, log_dir)


def load_prompts(args, model_path: str, tokenizer=None) -> list[D.Prompt]:
    """``args.num`` prompts, none of them among ``--exclude`` (a training trace's prompt ids)."""
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_path)
    options = D.SampleOptions(seed=args.seed, max_prompt_tokens=args.max_prompt_tokens,
                              max_output_tokens=args.max_tokens)
    excluded = set()
    for path in args.exclude or []:
        excluded |= set(json.loads(Path(path).read_text()))
    prompts = D.load(args.dataset, tokenizer, args.num + len(excluded), options)
    kept = [p for p in prompts if p.id not in excluded][: args.num]
    log(f"{len(kept)} {args.dataset} prompts ({len(prompts) - len(kept)} left out or spare)")
    return kept


def cmd_traces(args, model_path: str) -> int:
    prompts = load_prompts(args, model_path)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    flags = [*SERVING_FLAGS, "--arctic-schedule-trace", str(out.resolve()), *shlex.split(args.flags)]
    handle = serve(flags, model_path, args.log_dir, args.server_timeout)
    try:
        _, results = asyncio.run(S.run_level(
            handle.base_url, "traces", prompts, args.concurrency, args.request_timeout,
            [args.max_tokens] * len(prompts), ignore_eos=False,
            # The prompt id as the request id: the trace then says which dataset each
            # record came from (held-out evaluation per workload).
            rids=[f"{p.id}#{i}" for i, p in enumerate(prompts)]))
    finally:
        handle.stop()
    failed = sum(not r.ok for r in results)
    # The prompt ids, so that benchmark runs can leave the training prompts out.
    Path(str(out) + ".prompts.json").write_text(json.dumps([p.id for p in prompts]))
    log(f"{len(results) - failed} requests traced into {out} ({failed} failed)")
    return 1 if failed else 0


def cmd_refeaturize(args, model_path: str) -> int:
    """Recompute a trace's features with this build (after a ``FEATURE_VERSION``
    change) from the prompts it was recorded on: the same ``--dataset``,
    ``--num``, ``--seed`` and ``--exclude`` as its ``traces`` run. Each
    prompt is tokenized and decoded as the server does and must match the
    record's prompt digest; output lengths and timings are kept. Records of
    other requests (the warm-up) are dropped."""
    from dataclasses import replace

    from transformers import AutoTokenizer

    from sglang_arctic.scheduling.features import FEATURE_VERSION, RequestInfo, featurize
    from sglang_arctic.scheduling.trace import TraceWriter, prompt_digest, read_traces

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    by_id = {p.id: p for p in load_prompts(args, model_path, tokenizer)}
    # The scheduler featurizes SGLang's sampling params, which store greedy
    # decoding as temperature 1.0 (with top_k 1).
    temperature = args.temperature if args.temperature > 0 else 1.0
    records = read_traces(args.trace)
    out = Path(args.out)
    if out.exists() and out.resolve() == Path(args.trace).resolve():
        log("--out must not be the input trace")
        return 2
    out.write_text("")  # a fresh file: TraceWriter appends
    written = dropped = 0
    with TraceWriter(out) as writer:
        for record in records:
            prompt = by_id.get(record.rid.rsplit("#", 1)[0])
            if prompt is None:
                dropped += 1
                continue
            ids = tokenizer(prompt.text)["input_ids"]
            if prompt_digest(ids) != record.prompt_sha:
                log(f"{record.rid}: the prompt's tokens differ from the recorded digest "
                    f"(another dataset, seed or tokenizer than the trace's?)")
                return 1
            info = RequestInfo(prompt_text=tokenizer.decode(ids), prompt_tokens=len(ids),
                               max_new_tokens=record.max_new_tokens,
                               temperature=temperature, num_stop=0)
            writer.write(replace(record, feature_version=FEATURE_VERSION,
                                 features=featurize(info).tolist()))
            written += 1
    log(f"{written} records refeaturized (version {FEATURE_VERSION}) into {out}; "
        f"{dropped} not from these prompts dropped")
    return 0 if written else 1


def cmd_run(args, model_path: str) -> int:
    prompts = load_prompts(args, model_path)
    policies = args.policies.split(",")
    unknown = [p for p in policies if p not in POLICY_FLAGS]
    if unknown:
        log(f"unknown policies {unknown}; known: {', '.join(POLICY_FLAGS)}")
        return 2
    if "oracle" in policies and policies[0] == "oracle":
        log("oracle reads the trace of an earlier policy's run: list another policy first")
        return 2
    trace = Path(tempfile.mkdtemp(prefix="ltr_oracle_")) / "trace.jsonl"
    summaries, failed = [], 0
    for i, policy in enumerate(policies):
        flags = [*SERVING_FLAGS, "--max-running-requests", str(args.max_running),
                 *POLICY_FLAGS[policy], *shlex.split(args.flags)]
        if i == 0:
            flags += ["--arctic-schedule-trace", str(trace)]
        if policy == "oracle":
            flags += ["--arctic-schedule-oracle-trace", str(trace)]
        if policy == "ltr" and args.ranker:
            flags += ["--arctic-schedule-ranker", args.ranker]
        handle = serve(flags, model_path, args.log_dir, args.server_timeout)
        try:
            duration, results = asyncio.run(send_all(
                handle.base_url, policy, prompts, args.max_tokens, args.rate, args.seed,
                args.request_timeout))
        finally:
            handle.stop()
        failed += sum(not r.ok for r in results)
        summaries.append(summarize(policy, duration, results))
        log(f"{policy}: {json.dumps(asdict(summaries[-1]))}")
    oracle_shares(summaries)
    print(table(summaries))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "command": shlex.join(getattr(sys, "orig_argv", sys.argv)),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": S.machine_info(not S.cuda_usable()),
            "software": S.software_info(),
            "workload": {"dataset": args.dataset, "num": args.num, "seed": args.seed,
                         "max_tokens": args.max_tokens, "max_running": args.max_running,
                         "rate": args.rate},
            "policies": [asdict(s) for s in summaries],
        }, indent=2))
    return 1 if failed else 0


def table(summaries: Sequence[PolicySummary]) -> str:
    rows = ["| policy | mean latency (s) | p90 latency (s) | mean TTFT (s) | longest wait (s) "
            "| output tok/s | hit max_tokens | share of oracle's gain |",
            "|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        share = "" if s.oracle_share is None else f"{s.oracle_share:.2f}"
        rows.append(f"| {s.policy} | {s.latency_mean_s:.1f} | {s.latency_p90_s:.1f} | "
                    f"{s.ttft_mean_s:.1f} | {s.longest_wait_s:.1f} | {s.output_tok_s:.1f} | "
                    f"{s.hit_max_tokens}/{s.requests - s.failed} | {share} |")
    return "\n".join(rows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("traces", "run", "refeaturize"):
        q = sub.add_parser(name)
        q.add_argument("--dataset", default="mixed", choices=sorted(D.LOADERS))
        q.add_argument("--num", type=int, default=300)
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--max-tokens", type=int, default=512)
        q.add_argument("--max-prompt-tokens", type=int, default=1024)
        q.add_argument("--model-path", default=None)
        q.add_argument("--flags", default="", help="extra server flags (use --flags=\"...\")")
        q.add_argument("--log-dir", default=None)
        q.add_argument("--server-timeout", type=float, default=600)
        q.add_argument("--request-timeout", type=float, default=7200)
        q.add_argument("--exclude", action="append", help="JSON list of prompt ids to leave out "
                       "(the .prompts.json a traces run writes); repeatable")
    t = sub.choices["traces"]
    t.add_argument("--out", required=True)
    t.add_argument("--concurrency", type=int, default=16)
    f = sub.choices["refeaturize"]
    f.add_argument("--trace", required=True, help="a trace recorded by `traces` on these prompts")
    f.add_argument("--out", required=True)
    f.add_argument("--temperature", type=float, default=0.0,
                   help="what the traces run sent (default: greedy, as `traces` sends)")
    r = sub.choices["run"]
    r.add_argument("--policies", default="fcfs,lpm,ltr,oracle")
    r.add_argument("--max-running", type=int, default=8)
    r.add_argument("--rate", type=float, default=None, help="Poisson arrivals per second (default: a burst)")
    r.add_argument("--ranker", default=None)
    r.add_argument("--json", default=None)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    model_path = args.model_path
    if model_path is None:
        from sglang_arctic.models.default_model import materialize

        model_path = str(materialize())
    commands = {"traces": cmd_traces, "run": cmd_run, "refeaturize": cmd_refeaturize}
    return commands[args.command](args, model_path)


if __name__ == "__main__":
    raise SystemExit(main())
