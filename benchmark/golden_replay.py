"""Golden replay: our SuffixDecoding tree against arctic-inference's on real output streams.

Issue 5 asks that our suffix tree (``sglang_arctic.spec.suffix_tree.SuffixCache``)
accept as many draft tokens per step as the reference implementation
(``arctic_inference.suffix_decoding.SuffixDecodingCache``, a peer built from its
PyPI sdist by ``benchmark/golden_replay.sh``, never a dependency) on the same
streams, and spend no more time per token speculating and updating.

Subcommands

  record   Serve the default model with our server, without speculation, and
           generate greedily (temperature 0, stopping at the end of turn, at
           most ``--max-new-tokens``) on real prompts of each workload
           (``benchmark/datasets.py``: code_edit, template, sharegpt). Prompts
           are tokenized here and sent as ``input_ids`` to the native
           ``/generate``; the response's ``output_ids`` are the exact output
           tokens. One JSON line per stream; streams already in the file are
           kept, so an interrupted recording resumes.

  replay   Replay every stream, in order, through each drafter with the same
           parameters, as a speculative decoder with a perfect verifier would
           drive it: per stream ``start_request(prompt)``; then, until the
           output is exhausted, ``speculate`` on the last ``max_depth`` tokens
           of prompt + output so far, count the draft tokens the target accepts
           (path: the longest prefix of the draft equal to the next output
           tokens; tree: the deepest draft node whose root path equals them),
           emit those plus the bonus token (capped at the end of the stream),
           ``add_active_response(emitted)``; then ``stop_request``. Only the
           ``speculate`` and ``add_active_response`` calls are timed, for both
           drafters alike, through their public Python APIs. Timing is repeated
           (``--repeats``, drafters alternating) and the median run is kept.
           A third, untimed pass drives both drafters in lock step (same
           contexts, same updates, the schedule of our drafter) and counts the
           steps where they propose the identical draft; the first steps where
           they differ are reported with their contexts.

Usage

  python -m benchmark.golden_replay record [--num-prompts 30] [--workloads code_edit,template,sharegpt]
  python -m benchmark.golden_replay replay [--tree] [--peer-path benchmark/.peer/site]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import json
import os
import platform
import shlex
import signal
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

if __package__ in (None, ""):
    # Run as a script: import through the package, keep benchmark/ off sys.path
    # (our datasets.py must not shadow the Hugging Face `datasets` library).
    _HERE = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    sys.path.insert(0, str(_HERE.parent))

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "benchmark" / "results" / "golden"
DEFAULT_STREAMS = RESULTS_DIR / "streams.jsonl"
DEFAULT_PEER_PATH = REPO / "benchmark" / ".peer" / "site"
WORKLOADS = ("code_edit", "template", "sharegpt")


def log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[golden_replay {stamp}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Streams
# ---------------------------------------------------------------------------


@dataclass
class Stream:
    workload: str
    id: str  # the prompt id of benchmark/datasets.py, "<dataset>:<record id>"
    index: int  # position of the prompt in its workload's sample
    prompt_ids: list[int]
    output_ids: list[int]
    finish_reason: Any = None


def load_streams(path: Path, workloads: Sequence[str] | None = None) -> list[Stream]:
    """Streams of ``path`` grouped by workload (first-seen order, or ``workloads``), by index."""
    streams: list[Stream] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                streams.append(Stream(d["workload"], d["id"], int(d["index"]), list(d["prompt_ids"]),
                                      list(d["output_ids"]), d.get("finish_reason")))
    order: dict[str, int] = {}
    for s in streams:
        order.setdefault(s.workload, len(order))
    if workloads is not None:
        order = {w: i for i, w in enumerate(workloads)}
        streams = [s for s in streams if s.workload in order]
    streams.sort(key=lambda s: (order[s.workload], s.index))
    return streams


# ---------------------------------------------------------------------------
# Acceptance accounting
# ---------------------------------------------------------------------------


def accepted_path(draft: Sequence[int], target: Sequence[int], start: int = 0) -> int:
    """Length of the longest prefix of ``draft`` equal to ``target[start:]``."""
    n = min(len(draft), len(target) - start)
    i = 0
    while i < n and draft[i] == target[start + i]:
        i += 1
    return i


def accepted_tree(token_ids: Sequence[int], parents: Sequence[int], target: Sequence[int],
                  start: int = 0) -> int:
    """Depth of the deepest draft node whose path from the root equals ``target[start:]``.

    ``parents[i]`` is the index of node i's parent, -1 for a child of the root.
    A path draft (parents ``[-1, 0, 1, ...]``) gives the same as ``accepted_path``.
    """
    remaining = len(target) - start
    depth: list[int] = [0] * len(token_ids)  # > 0: node matches along its whole path
    state: list[int] = [0] * len(token_ids)  # 0 unknown, 1 computed

    def resolve(i: int) -> int:
        # Iterative walk up to a resolved ancestor (parents need not precede children).
        chain = []
        j = i
        while j >= 0 and not state[j]:
            chain.append(j)
            j = parents[j]
            if len(chain) > len(token_ids):
                raise ValueError("the parents of the draft contain a cycle")
        base = 0 if j < 0 else depth[j]
        ok = j < 0 or depth[j] > 0
        for k in reversed(chain):
            d = base + 1
            ok = ok and d <= remaining and token_ids[k] == target[start + d - 1]
            depth[k] = d if ok else 0
            state[k] = 1
            base = d
        return depth[i]

    best = 0
    for i in range(len(token_ids)):
        if parents[i] >= len(token_ids) or parents[i] < -1:
            raise ValueError(f"parent index {parents[i]} of draft node {i} is out of range")
        best = max(best, resolve(i))
    return best


@dataclass(frozen=True)
class Params:
    max_depth: int = 64
    max_cached_requests: int = 10000
    max_spec_tokens: int = 16
    factor: float = 1.0
    offset: float = 0.0
    min_token_prob: float = 0.1
    use_tree: bool = False


@dataclass
class StreamStats:
    workload: str
    steps: int = 0
    accepted: int = 0  # draft tokens accepted
    emitted: int = 0  # tokens emitted (accepted + bonus): the stream length
    drafted: int = 0  # draft tokens proposed
    ns: int = 0  # speculate + add_active_response


class Drafter:
    """A cache factory plus the names of its methods; every call is positional, so both
    drafters see the same call shape: ``speculate(req_id, context, max_spec_tokens,
    factor, offset, min_token_prob, use_tree)``."""

    def __init__(self, name: str, factory: Callable[[Params], Any]):
        self.name = name
        self.factory = factory


def replay(streams: Sequence[Stream], drafter: Drafter, params: Params,
           clock: Callable[[], int] = time.perf_counter_ns) -> list[StreamStats]:
    """Replay ``streams`` in order through a fresh cache of ``drafter``; one StreamStats each."""
    cache = drafter.factory(params)
    start_request, stop_request = cache.start_request, cache.stop_request
    speculate, update = cache.speculate, cache.add_active_response
    depth, max_spec, factor, offset = params.max_depth, params.max_spec_tokens, params.factor, params.offset
    min_prob, use_tree = params.min_token_prob, params.use_tree
    out_stats: list[StreamStats] = []
    for s in streams:
        prompt, out = s.prompt_ids, s.output_ids
        seq = prompt + out
        plen, n = len(prompt), len(out)
        rid = s.id
        st = StreamStats(s.workload)
        start_request(rid, prompt)
        pos = 0
        ns = steps = accepted = drafted = 0
        while pos < n:
            end = plen + pos
            context = seq[end - depth if end > depth else 0 : end]
            t0 = clock()
            draft = speculate(rid, context, max_spec, factor, offset, min_prob, use_tree)
            t1 = clock()
            tokens = draft.token_ids
            if use_tree:
                a = accepted_tree(tokens, draft.parents, out, pos)
            else:
                a = accepted_path(tokens, out, pos)
            e = a + 1 if a + 1 < n - pos else n - pos
            chunk = out[pos : pos + e]
            t2 = clock()
            update(rid, chunk)
            t3 = clock()
            ns += (t1 - t0) + (t3 - t2)
            steps += 1
            accepted += a
            drafted += len(tokens)
            pos += e
        stop_request(rid)
        st.steps, st.accepted, st.emitted, st.drafted, st.ns = steps, accepted, pos, drafted, ns
        out_stats.append(st)
    return out_stats


# ---------------------------------------------------------------------------
# Lock-step comparison of the drafts
# ---------------------------------------------------------------------------


@dataclass
class Agreement:
    steps: int = 0
    same_tokens: int = 0  # token_ids and parents identical
    same_all: int = 0  # also match_len equal and score equal to 1e-5 (the peer uses float)
    same_accepted: int = 0  # the target accepts as many tokens from both drafts
    examples: list[dict] = field(default_factory=list)
    per_workload: dict[str, list[int]] = field(default_factory=dict)  # workload -> [steps, same_tokens]


def compare_lockstep(streams: Sequence[Stream], leader: Drafter, other: Drafter, params: Params,
                     max_examples: int = 5) -> Agreement:
    """Drive both drafters with the same contexts and updates (``leader``'s schedule)."""
    a_cache, b_cache = leader.factory(params), other.factory(params)
    depth, use_tree = params.max_depth, params.use_tree
    args = (params.max_spec_tokens, params.factor, params.offset, params.min_token_prob, use_tree)
    ag = Agreement()
    for si, s in enumerate(streams):
        prompt, out = s.prompt_ids, s.output_ids
        seq = prompt + out
        plen, n = len(prompt), len(out)
        a_cache.start_request(s.id, prompt)
        b_cache.start_request(s.id, prompt)
        per = ag.per_workload.setdefault(s.workload, [0, 0])
        pos = step = 0
        while pos < n:
            end = plen + pos
            context = seq[max(0, end - depth) : end]
            da = a_cache.speculate(s.id, context, *args)
            db = b_cache.speculate(s.id, context, *args)
            acc = [accepted_tree(d.token_ids, d.parents, out, pos) if use_tree
                   else accepted_path(d.token_ids, out, pos) for d in (da, db)]
            same = list(da.token_ids) == list(db.token_ids) and list(da.parents) == list(db.parents)
            ag.steps += 1
            per[0] += 1
            ag.same_accepted += acc[0] == acc[1]
            if same:
                ag.same_tokens += 1
                per[1] += 1
                if da.match_len == db.match_len and abs(da.score - db.score) <= 1e-5 * max(1.0, abs(da.score)):
                    ag.same_all += 1
            elif len(ag.examples) < max_examples:
                ag.examples.append({
                    "stream": si, "stream_id": s.id, "workload": s.workload, "step": step, "pos": pos,
                    "context_tail": context[-12:],
                    "next_output": out[pos : pos + params.max_spec_tokens],
                    leader.name: _draft_dict(da, acc[0]),
                    other.name: _draft_dict(db, acc[1]),
                })
            e = min(acc[0] + 1, n - pos)
            chunk = out[pos : pos + e]
            a_cache.add_active_response(s.id, chunk)
            b_cache.add_active_response(s.id, chunk)
            pos += e
            step += 1
        a_cache.stop_request(s.id)
        b_cache.stop_request(s.id)
    return ag


def _draft_dict(d: Any, accepted: int) -> dict:
    return {"token_ids": list(d.token_ids), "parents": list(d.parents),
            "probs": [round(float(p), 6) for p in d.probs], "score": round(float(d.score), 6),
            "match_len": int(d.match_len), "accepted": accepted}


# ---------------------------------------------------------------------------
# Drafters
# ---------------------------------------------------------------------------


def ours_drafter() -> Drafter:
    from sglang_arctic.spec.suffix_tree import SuffixCache

    return Drafter("ours", lambda p: SuffixCache(p.max_depth, p.max_cached_requests))


def peer_drafter(peer_path: str | None) -> Drafter:
    """arctic-inference's cache, imported from ``peer_path`` (put first on sys.path) if given."""
    if peer_path:
        if not Path(peer_path).is_dir():
            raise SystemExit(f"peer path {peer_path} does not exist; run benchmark/golden_replay.sh "
                             "(or pass --peer-path where arctic-inference is installed)")
        sys.path.insert(0, str(Path(peer_path).resolve()))
    try:
        from arctic_inference.suffix_decoding import SuffixDecodingCache
    except ImportError as exc:
        raise SystemExit(f"cannot import arctic_inference.suffix_decoding ({exc}); build the peer with "
                         "benchmark/golden_replay.sh") from None
    return Drafter("peer", lambda p: SuffixDecodingCache(p.max_depth, p.max_cached_requests))


def peer_version(peer_path: str | None) -> str:
    from importlib import metadata

    with contextlib.suppress(Exception):
        if peer_path:
            dists = metadata.distributions(path=[str(peer_path)])
            for d in dists:
                if d.metadata["Name"].replace("-", "_").lower() == "arctic_inference":
                    return d.version
        return metadata.version("arctic-inference")
    return "unknown"


# ---------------------------------------------------------------------------
# Summaries and report
# ---------------------------------------------------------------------------


def aggregate(stats: Iterable[StreamStats]) -> dict[str, float]:
    stats = list(stats)
    steps = sum(s.steps for s in stats)
    tokens = sum(s.emitted for s in stats)
    ns = sum(s.ns for s in stats)
    return {
        "streams": len(stats),
        "steps": steps,
        "tokens": tokens,
        "accepted": sum(s.accepted for s in stats),
        "drafted": sum(s.drafted for s in stats),
        "accepted_per_step": sum(s.accepted for s in stats) / steps if steps else 0.0,
        "emitted_per_step": tokens / steps if steps else 0.0,
        "drafted_per_step": sum(s.drafted for s in stats) / steps if steps else 0.0,
        "us_per_step": ns / steps / 1e3 if steps else 0.0,
        "us_per_token": ns / tokens / 1e3 if tokens else 0.0,
        "ns": ns,
    }


def summarize_runs(runs: list[list[StreamStats]], workloads: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per workload and overall; timing figures are the median over runs, counts are from run 0
    (checked identical across runs)."""
    first = runs[0]
    for r in runs[1:]:
        if [(s.steps, s.accepted, s.emitted) for s in r] != [(s.steps, s.accepted, s.emitted) for s in first]:
            raise RuntimeError("a replay run gave different acceptance from the first: not deterministic")
    out: dict[str, dict[str, float]] = {}
    for w in [*workloads, "overall"]:
        pick = (lambda s: True) if w == "overall" else (lambda s, w=w: s.workload == w)
        per_run = [aggregate(s for s in r if pick(s)) for r in runs]
        row = dict(per_run[0])
        for key in ("us_per_step", "us_per_token", "ns"):
            row[key] = statistics.median(x[key] for x in per_run)
        row["us_per_token_runs"] = [round(x["us_per_token"], 4) for x in per_run]
        out[w] = row
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def paired_time_ratio(ours: dict, peer: dict) -> float:
    """Median over runs of ours/peer µs per token, run k against run k: the two
    drafters of one repeat ran back to back, so machine noise mostly cancels."""
    pairs = zip(ours["us_per_token_runs"], peer["us_per_token_runs"])
    return statistics.median(_ratio(o, q) for o, q in pairs)


def markdown(meta: dict, results: dict, agreement: Agreement | None, workloads: Sequence[str]) -> str:
    p = meta["params"]
    ours, peer = results["ours"], results.get("peer")
    lines = [
        "# SuffixDecoding golden replay: ours vs arctic-inference",
        "",
        f"- Command: `{meta['command']}`",
        f"- Date: {meta['date']}; machine: {meta['machine']}",
        f"- Streams: `{meta['streams_file']}` ({meta['num_streams']} streams, "
        f"{meta['num_tokens']} output tokens; recorded from {meta.get('record_model', 'the default model')})",
        f"- Drafters: ours = `sglang_arctic.spec.suffix_tree.SuffixCache` (sglang-arctic "
        f"{meta['ours_version']}); peer = `arctic_inference.suffix_decoding.SuffixDecodingCache` "
        f"(arctic-inference {meta['peer_version']})",
        f"- Parameters: max_depth {p['max_depth']}, max_cached_requests {p['max_cached_requests']}, "
        f"max_spec_tokens {p['max_spec_tokens']}, factor {p['factor']}, offset {p['offset']}, "
        f"min_token_prob {p['min_token_prob']}, {'tree' if p['use_tree'] else 'path'} mode; "
        "streams replayed in order through one cache per drafter (the global tree carries over)",
        f"- Timing: speculate + add_active_response only, median of {meta['repeats']} runs "
        "(drafters alternating), GC off during runs",
        "",
        "| workload | drafter | streams | steps | accepted/step | emitted/step | µs/step | µs/token |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for w in [*workloads, "overall"]:
        for name, res in (("ours", ours), ("peer", peer)):
            if res is None:
                continue
            r = res[w]
            lines.append(f"| {w} | {name} | {r['streams']} | {r['steps']} | {r['accepted_per_step']:.4f} | "
                         f"{r['emitted_per_step']:.4f} | {r['us_per_step']:.2f} | {r['us_per_token']:.3f} |")
    if peer is not None:
        lines += [
            "",
            "Ratios ours / peer (acceptance: 1.00 = equal, done when within 2%; time: lower is better, "
            "done when <= 1.00; the paired column is the median over repeats of run k against run k, "
            "the robust figure):",
            "",
            "| workload | accepted/step | emitted/step | µs/token (medians) | µs/token (paired) |",
            "|---|---:|---:|---:|---:|",
        ]
        for w in [*workloads, "overall"]:
            o, q = ours[w], peer[w]
            lines.append(f"| {w} | {_ratio(o['accepted_per_step'], q['accepted_per_step']):.4f} | "
                         f"{_ratio(o['emitted_per_step'], q['emitted_per_step']):.4f} | "
                         f"{_ratio(o['us_per_token'], q['us_per_token']):.3f} | "
                         f"{paired_time_ratio(o, q):.3f} |")
    if agreement is not None:
        pct = 100.0 * agreement.same_tokens / agreement.steps if agreement.steps else 0.0
        lines += [
            "",
            f"Identical drafts (lock step, same contexts and updates): {agreement.same_tokens} of "
            f"{agreement.steps} steps ({pct:.2f}%) have the same token ids and parents; "
            f"{agreement.same_all} also the same match length and score; the target accepts the same "
            f"number of tokens from both in {agreement.same_accepted} steps.",
        ]
        per = ", ".join(f"{w} {v[1]}/{v[0]}" for w, v in agreement.per_workload.items())
        lines.append(f"Per workload: {per}.")
        if agreement.examples:
            lines += ["", "First differing steps:", ""]
            for ex in agreement.examples:
                lines.append(f"- stream {ex['stream']} (`{ex['stream_id']}`), step {ex['step']}, "
                             f"output position {ex['pos']}: context tail {ex['context_tail']}, "
                             f"next output {ex['next_output']}; ours {ex['ours']}; peer {ex['peer']}")
    lines += [""]
    v = meta.get("verdict")
    if v:
        lines += [f"Verdict: {v}", ""]
    return "\n".join(lines)


def verdict(results: dict) -> str | None:
    if "peer" not in results:
        return None
    o, q = results["ours"]["overall"], results["peer"]["overall"]
    acc = _ratio(o["accepted_per_step"], q["accepted_per_step"])
    t = paired_time_ratio(o, q)
    ok_acc = abs(acc - 1.0) <= 0.02
    ok_t = t <= 1.0
    return (f"acceptance ratio {acc:.4f} ({'within' if ok_acc else 'NOT within'} 2%); time per token "
            f"ratio (paired median) {t:.3f} ({'not higher' if ok_t else 'HIGHER'} than the peer's) -> "
            f"{'PASS' if ok_acc and ok_t else 'FAIL'}")


# ---------------------------------------------------------------------------
# record
# ---------------------------------------------------------------------------


def cmd_record(args: argparse.Namespace) -> int:
    import requests
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from benchmark import datasets as D
    from benchmark.side_by_side import build_system, cuda_usable, pick_port, software_info, start_server

    signal.signal(signal.SIGTERM, lambda signum, frame: (_ for _ in ()).throw(KeyboardInterrupt()))
    out_path = Path(args.output)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    done: set[tuple[str, int]] = set()
    if out_path.exists():
        for line in out_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                d = json.loads(line)
                done.add((d["workload"], int(d["index"])))

    if args.model_path is None:
        from sglang_arctic.models.default_model import materialize

        args.model_path = str(materialize())
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model_path)
    options = D.SampleOptions(seed=args.seed, max_output_tokens=args.max_new_tokens)
    todo: list[tuple[str, int, Any, list[int]]] = []
    for w in args.workloads:
        prompts = D.load(w, tokenizer, args.num_prompts, options)
        for i, prompt in enumerate(prompts):
            if (w, i) not in done:
                ids = tokenizer(prompt.text)["input_ids"]
                todo.append((w, i, prompt, ids))
    log(f"{len(done)} streams already in {out_path}; {len(todo)} to record "
        f"({', '.join(f'{w}: {sum(t[0] == w for t in todo)}' for w in args.workloads)})")
    if not todo:
        return 0

    spec = build_system("arctic", args.model_path, shlex.split(args.server_flags), not cuda_usable())
    port = args.port or pick_port()
    log(f"starting `{shlex.join([*spec.launcher, *spec.argv, '--port', str(port)])}`")
    t0 = time.monotonic()
    handle = start_server(spec, port, args.server_timeout, None)
    log(f"server ready after {time.monotonic() - t0:.0f} s (log: {handle.log_path})")
    meta_path = out_path.with_suffix(".meta.json")
    meta = {
        "model_path": args.model_path,
        "server_command": shlex.join([*spec.launcher, *spec.argv, "--port", str(port)]),
        "server_env": spec.env,
        "sampling_params": {"temperature": 0, "max_new_tokens": args.max_new_tokens, "ignore_eos": False},
        "seed": args.seed,
        "num_prompts": args.num_prompts,
        "software": software_info(),
        "date": _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds"),
    }
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")

    def one(item: tuple[str, int, Any, list[int]]) -> dict:
        w, i, prompt, ids = item
        payload = {"input_ids": ids, "sampling_params": meta["sampling_params"], "stream": False}
        r = requests.post(handle.base_url + "/generate", json=payload, timeout=args.request_timeout)
        r.raise_for_status()
        body = r.json()
        if isinstance(body, list):
            body = body[0]
        out_ids = body.get("output_ids")
        if out_ids is None:
            raise RuntimeError(f"/generate returned no output_ids: {sorted(body)}")
        m = body.get("meta_info") or {}
        if m.get("completion_tokens") is not None and int(m["completion_tokens"]) != len(out_ids):
            raise RuntimeError(f"{prompt.id}: {len(out_ids)} output_ids but completion_tokens "
                               f"{m['completion_tokens']}")
        return {"workload": w, "id": prompt.id, "index": i, "prompt_ids": ids,
                "output_ids": [int(x) for x in out_ids], "finish_reason": m.get("finish_reason")}

    failed = 0
    t_start = time.monotonic()
    try:
        with open(out_path, "a", encoding="utf-8") as f, ThreadPoolExecutor(args.concurrency) as pool:
            futures = {pool.submit(one, item): item for item in todo}
            for k, fut in enumerate(as_completed(futures), 1):
                w, i, prompt, _ = futures[fut]
                try:
                    rec = fut.result()
                except Exception as exc:  # noqa: BLE001 - report, go on
                    failed += 1
                    log(f"{w}[{i}] {prompt.id} failed: {exc}")
                    continue
                f.write(json.dumps(rec) + "\n")
                f.flush()
                log(f"{k}/{len(todo)} {w}[{i}]: {len(rec['prompt_ids'])} prompt + {len(rec['output_ids'])} "
                    f"output tokens ({time.monotonic() - t_start:.0f} s)")
    finally:
        code = handle.stop()
        log(f"server stopped (exit code {code})")
    return 1 if failed else 0


# ---------------------------------------------------------------------------
# replay
# ---------------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    path = Path(args.streams)
    if not path.exists():
        log(f"no streams at {path}; run `python -m benchmark.golden_replay record` first")
        return 2
    streams = load_streams(path, args.workloads)
    if args.limit:
        per: dict[str, int] = {}
        kept = []
        for s in streams:
            per[s.workload] = per.get(s.workload, 0) + 1
            if per[s.workload] <= args.limit:
                kept.append(s)
        streams = kept
    workloads = list(dict.fromkeys(s.workload for s in streams))
    params = Params(args.max_depth, args.max_cached_requests, args.max_spec_tokens, args.factor,
                    args.offset, args.min_token_prob, args.tree)
    drafters = [ours_drafter()]
    if not args.no_peer:
        drafters.append(peer_drafter(args.peer_path))
    log(f"{len(streams)} streams ({', '.join(f'{w}: {sum(s.workload == w for s in streams)}' for w in workloads)}), "
        f"{sum(len(s.output_ids) for s in streams)} output tokens; params {asdict(params)}")

    runs: dict[str, list[list[StreamStats]]] = {d.name: [] for d in drafters}
    gc_was = gc.isenabled()
    try:
        for k in range(args.repeats):
            order = drafters if k % 2 == 0 else drafters[::-1]
            for d in order:
                gc.collect()
                gc.disable()
                t0 = time.perf_counter()
                stats = replay(streams, d, params)
                wall = time.perf_counter() - t0
                if gc_was:
                    gc.enable()
                agg = aggregate(stats)
                runs[d.name].append(stats)
                log(f"run {k + 1}/{args.repeats} {d.name}: {agg['accepted_per_step']:.4f} accepted/step, "
                    f"{agg['us_per_token']:.3f} µs/token ({wall:.1f} s wall)")
    finally:
        if gc_was:
            gc.enable()
    results = {name: summarize_runs(r, workloads) for name, r in runs.items()}

    agreement = None
    if not args.no_peer and not args.no_compare:
        log("lock-step draft comparison")
        agreement = compare_lockstep(streams, drafters[0], drafters[1], params, args.examples)

    from benchmark.side_by_side import _version, machine_info

    mi = machine_info(cpu=True)
    record_meta = path.with_suffix(".meta.json")
    record_model = None
    if record_meta.exists():
        with contextlib.suppress(Exception):
            record_model = json.loads(record_meta.read_text())["model_path"]
    meta = {
        "command": shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv])),
        "date": _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds"),
        "machine": f"{mi['nproc']} CPUs ({mi['cpu_model']}), Python {mi['python']}",
        "streams_file": str(path),
        "num_streams": len(streams),
        "num_tokens": sum(len(s.output_ids) for s in streams),
        "params": asdict(params),
        "repeats": args.repeats,
        "ours_version": _version("sglang-arctic"),
        "peer_version": peer_version(args.peer_path) if not args.no_peer else None,
    }
    if record_model:
        meta["record_model"] = f"`{record_model}`"
    meta["verdict"] = verdict(results)
    report = markdown(meta, results, agreement, workloads)
    print(report)
    out_md = Path(args.output)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(report)
    out_json = Path(args.json) if args.json else out_md.with_suffix(".json")
    raw = {"meta": meta, "results": results,
           "agreement": asdict(agreement) if agreement is not None else None}
    out_json.write_text(json.dumps(raw, indent=1) + "\n")
    log(f"wrote {out_md} and {out_json}")
    return 0


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def _workloads(text: str) -> list[str]:
    names = [w.strip() for w in text.split(",") if w.strip()]
    return names


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmark.golden_replay", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("record", help="record greedy output streams from our server (no speculation)")
    r.add_argument("--workloads", type=_workloads, default=list(WORKLOADS))
    r.add_argument("--num-prompts", type=int, default=30, help="prompts per workload (default: %(default)s)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--max-new-tokens", type=int, default=256)
    r.add_argument("--concurrency", type=int, default=4)
    r.add_argument("--model-path", default=None, help="default: the embedded SmolLM2-135M-Instruct")
    r.add_argument("--server-flags", default="", help="extra flags for our server (one shell-quoted string)")
    r.add_argument("--port", type=int, default=0)
    r.add_argument("--server-timeout", type=float, default=600.0)
    r.add_argument("--request-timeout", type=float, default=1800.0)
    r.add_argument("--output", default=str(DEFAULT_STREAMS))

    y = sub.add_parser("replay", help="replay the streams through our tree and arctic-inference's")
    y.add_argument("--streams", default=str(DEFAULT_STREAMS))
    y.add_argument("--workloads", type=_workloads, default=None, help="default: every workload in the file")
    y.add_argument("--limit", type=int, default=0, help="at most this many streams per workload (0: all)")
    y.add_argument("--max-depth", type=int, default=64)
    y.add_argument("--max-cached-requests", type=int, default=10000)
    y.add_argument("--max-spec-tokens", type=int, default=16)
    y.add_argument("--factor", type=float, default=1.0)
    y.add_argument("--offset", type=float, default=0.0)
    y.add_argument("--min-token-prob", type=float, default=0.1)
    y.add_argument("--tree", action="store_true", help="tree speculation (default: path)")
    y.add_argument("--repeats", type=int, default=15, help="timed runs per drafter; the median is kept")
    y.add_argument("--peer-path", default=str(DEFAULT_PEER_PATH) if DEFAULT_PEER_PATH.is_dir() else None,
                   help="folder where arctic-inference is installed (default: benchmark/.peer/site if "
                        "present, else the environment's)")
    y.add_argument("--no-peer", action="store_true", help="replay only our drafter")
    y.add_argument("--no-compare", action="store_true", help="skip the lock-step draft comparison")
    y.add_argument("--examples", type=int, default=5, help="differing steps to report")
    y.add_argument("--output", default=str(RESULTS_DIR / "replay.md"))
    y.add_argument("--json", default=None, help="default: the --output path with .json")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cmd == "record":
        return cmd_record(args)
    return cmd_replay(args)


if __name__ == "__main__":
    sys.exit(main())
