"""Side-by-side serving benchmark: vanilla SGLang vs sglang_arctic on one machine.

Each system is started in turn (never two at once), on the same model with the
same flags, and driven over HTTP with the same real prompts at several
concurrency levels. The result is a Markdown table of output throughput,
request throughput, TTFT (mean/p50/p99) and mean TPOT per system and
concurrency, plus the ratios of every system to the baseline (DESIGN.md
section 5: every speed claim is a ratio measured in one run).

Usage (from the repository root)::

    .venv/bin/python -m benchmark.side_by_side \\
        --systems vanilla,arctic --concurrency 1,4,16 --max-tokens 256 \\
        --output docs/benchmarks/side_by_side.md --json benchmark/results/side_by_side.json

    # extra server flags; use the "=" form because the value starts with "--"
    .venv/bin/python -m benchmark.side_by_side --common-flags="--max-running-requests 8"

Systems
  vanilla  ``sglang serve --model-path M`` with SGLang's plugins switched off
           (``SGLANG_PLUGINS=none``). Without a usable GPU it also gets
           ``SGLANG_USE_CPU_ENGINE=1`` and, unless the flags given set them,
           ``--device cpu --attention-backend torch_native --max-total-tokens 32768
           --dtype D --sleep-on-idle`` (the same CPU defaults as our launcher, except the
           backend; D is float32 on CPUs without native bf16, else auto).
           Our CPU ``sgl_kernel`` import hook is not a plugin and stays active:
           vanilla SGLang cannot import its kernel package on CPU without it.
  arctic   ``python -m sglang_arctic.launch_server --model-path M`` with every plugin
           allowed (``SGLANG_PLUGINS=""``). On CPU its own defaults are
           ``--device cpu --attention-backend arctic --max-total-tokens 32768 --dtype D``.
  ngram    arctic with SGLang's own ``--speculative-algorithm NGRAM``.
  suffix   arctic with SuffixDecoding (``--arctic-suffix-decoding``).
Flags: ``--common-flags`` go to every system, ``--<system>-flags`` to one.

Workload
  Prompts come from ``benchmark/datasets.py`` (ShareGPT first human turns,
  rendered with the model's chat template, seeded sample). Each concurrency
  level gets its own slice of prompts (no prefix-cache reuse across levels),
  and every system gets the same slices in the same order. A warm-up request
  runs on each server before measuring.
  Requests go to SGLang's native ``/generate`` with ``"stream": true`` and
  ``{"temperature": 0, "max_new_tokens": N, "ignore_eos": true}``, where N is
  the recorded ShareGPT reply length capped at ``--max-tokens``. ``ignore_eos``
  makes every system generate exactly N tokens per request, so throughput is
  compared on identical token counts even where the systems' greedy outputs
  differ (bf16 on CPU is not bit-deterministic) or stop early.
  Load is closed-loop: ``c`` clients, each sending its next request as soon as
  its previous one finished.

Metrics (successful requests only; failed requests are counted and shown)
  output tok/s   sum of completion tokens / wall time of the level
  req/s          successful requests / wall time of the level
  TTFT           send -> first streamed chunk that carries text or a completion token
  TPOT           per request (t(final chunk) - t(first token)) / (completion_tokens - 1),
                 then the mean over requests (requests with one token are left out)

This is a benchmark: it checks nothing about the figures. It exits non-zero
only when a system failed to start or requests failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as _dt
import json
import math
import os
import platform
import shlex
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

if __package__ in (None, ""):
    # Run as a script (python benchmark/side_by_side.py): import through the
    # package, and keep benchmark/ itself off sys.path so that our datasets.py
    # cannot shadow the Hugging Face `datasets` library.
    _HERE = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    sys.path.insert(0, str(_HERE.parent))

from benchmark import datasets as D  # noqa: E402

PORT_RANGE = (34000, 34999)
DEFAULT_CONCURRENCY = "1,4,16"
CPU_KV_TOKENS = 32768
WARMUP_MAX_TOKENS = 16


def log(message: str) -> None:
    """Progress goes to stderr; stdout carries only the table."""
    stamp = time.strftime("%H:%M:%S")
    print(f"[side_by_side {stamp}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Systems
# ---------------------------------------------------------------------------


@dataclass
class SystemSpec:
    name: str
    launcher: list[str]
    argv: list[str]  # flags after the launcher, without --port
    env: dict[str, str]  # variables set on top of this process's environment


def _given(argv: Sequence[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in argv)


def cuda_usable() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.device_count() > 0)
    except Exception:  # noqa: BLE001 - no torch, no GPU
        return False


def build_system(name: str, model_path: str, flags: list[str], cpu: bool) -> SystemSpec:
    from sglang_arctic.launch_server import cpu_default_dtype
    from sglang_arctic.testing.server import ARCTIC_LAUNCHER, VANILLA_LAUNCHER

    argv = ["--model-path", model_path, *flags]
    if name == "vanilla":
        env = {"SGLANG_PLUGINS": "none"}
        if cpu:
            env["SGLANG_USE_CPU_ENGINE"] = "1"
            for flag, value in (
                ("--device", "cpu"),
                ("--attention-backend", "torch_native"),
                ("--max-total-tokens", str(CPU_KV_TOKENS)),
                ("--dtype", cpu_default_dtype()),
                ("--sleep-on-idle", None),
            ):
                if not _given(argv, flag):
                    argv += [flag] if value is None else [flag, value]
        return SystemSpec(name, list(VANILLA_LAUNCHER), argv, env)
    if name in ARCTIC_SYSTEM_FLAGS:
        # An empty whitelist loads every plugin, whatever the caller's environment says.
        argv += [f for f in ARCTIC_SYSTEM_FLAGS[name] if not _given(argv, f)]
        return SystemSpec(name, list(ARCTIC_LAUNCHER), argv, {"SGLANG_PLUGINS": ""})
    raise ValueError(f"unknown system {name!r}; known: {', '.join(SYSTEMS)}")


# sglang_arctic systems: our launcher plus these flags.
ARCTIC_SYSTEM_FLAGS: dict[str, list[str]] = {
    "arctic": [],
    # SGLang's own NGRAM drafter (on CPU it verifies through our backend).
    "ngram": ["--speculative-algorithm", "NGRAM"],
    # SuffixDecoding (issue 5).
    "suffix": ["--arctic-suffix-decoding"],
}
SYSTEMS = ("vanilla", *ARCTIC_SYSTEM_FLAGS)


def pick_port(lo: int = PORT_RANGE[0], hi: int = PORT_RANGE[1]) -> int:
    """A port in [lo, hi] that nothing listens on; the scan starts at a pid-dependent
    offset so that concurrent runs rarely race for the same port."""
    span = hi - lo + 1
    first = os.getpid() % span
    for i in range(span):
        port = lo + (first + i) % span
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {lo}..{hi}")


class _ChildWatcher:
    """Remembers every child process started while it runs.

    ``launch()`` starts the server in its own session and only stops it on a
    start-up timeout; if we are interrupted while it waits for the server (or
    the launcher dies leaving SGLang children behind), this is how we find the
    process group to kill.
    """

    def __init__(self) -> None:
        import psutil

        self._me = psutil.Process()
        self._before = {p.pid for p in self._me.children()}
        self.pids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _poll(self) -> None:
        try:
            for p in self._me.children():
                if p.pid not in self._before:
                    self.pids.add(p.pid)
        except Exception:  # noqa: BLE001 - a child vanished mid-listing
            pass

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._poll()

    def __enter__(self) -> "_ChildWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._poll()

    def kill_groups(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # launch() makes each child a group leader
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)


def start_server(spec: SystemSpec, port: int, timeout: float, log_dir: str | None):
    from sglang_arctic.testing.server import launch

    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
    watcher = _ChildWatcher()
    try:
        with watcher:
            return launch(
                spec.argv, port=port, launcher=spec.launcher, env=spec.env,
                timeout=timeout, log_dir=log_dir,
            )
    except BaseException:
        watcher.kill_groups()
        raise


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Let a cleanup finish even if Ctrl-C is pressed again; re-raise afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    hit: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: hit.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if hit:
        raise KeyboardInterrupt


# ---------------------------------------------------------------------------
# Load generation
# ---------------------------------------------------------------------------


@dataclass
class RequestResult:
    prompt_id: str
    prompt_tokens: int  # as counted by the client's tokenizer
    requested_tokens: int  # max_new_tokens
    start_s: float = 0.0  # offset from the start of the level
    ok: bool = False
    error: str | None = None
    ttft_s: float | None = None
    latency_s: float | None = None
    tpot_s: float | None = None
    completion_tokens: int = 0
    server_prompt_tokens: int | None = None
    cached_tokens: int | None = None
    chunks: int = 0
    finish_reason: Any = None
    spec_verify_ct: int | None = None  # verify steps (speculative systems only)


def _sampling_params(max_new_tokens: int, ignore_eos: bool = True) -> dict[str, Any]:
    return {"temperature": 0, "max_new_tokens": max_new_tokens, "ignore_eos": ignore_eos}


async def send_request(session, base_url: str, prompt: D.Prompt, max_new_tokens: int,
                       t_level: float, ignore_eos: bool = True, rid: str | None = None) -> RequestResult:
    """POST one streaming /generate request and time it. Never raises: errors are recorded."""
    import aiohttp

    result = RequestResult(prompt.id, prompt.prompt_tokens, max_new_tokens)
    payload = {"text": prompt.text, "sampling_params": _sampling_params(max_new_tokens, ignore_eos),
               "stream": True}
    if rid is not None:
        payload["rid"] = rid
    t0 = time.perf_counter()
    result.start_s = t0 - t_level
    t_first = t_final = None
    final: dict | None = None
    done = False
    try:
        async with session.post(base_url + "/generate", json=payload) as resp:
            if resp.status != 200:
                body = (await resp.text())[:500]
                result.error = f"HTTP {resp.status}: {body}"
                return result
            pending = b""
            async for data in resp.content.iter_any():
                now = time.perf_counter()
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    line = line.strip()
                    if not line.startswith(b"data:"):
                        continue
                    body = line[5:].strip()
                    if body == b"[DONE]":
                        done = True
                        continue
                    chunk = json.loads(body)
                    if "error" in chunk:
                        result.error = f"error chunk: {json.dumps(chunk['error'])[:500]}"
                        continue
                    result.chunks += 1
                    meta = chunk.get("meta_info") or {}
                    if t_first is None and (chunk.get("text") or meta.get("completion_tokens")):
                        t_first = now
                    if meta.get("finish_reason") is not None:
                        final, t_final = chunk, now
        end = time.perf_counter()
    except asyncio.CancelledError:
        raise
    except (aiohttp.ClientError, asyncio.TimeoutError, json.JSONDecodeError, OSError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:500]
        return result
    if result.error is not None:
        return result
    if final is None:
        result.error = "stream ended without a final chunk" + ("" if done else " (no [DONE])")
        return result
    meta = final.get("meta_info") or {}
    result.finish_reason = meta.get("finish_reason")
    result.completion_tokens = int(meta.get("completion_tokens") or 0)
    result.server_prompt_tokens = meta.get("prompt_tokens")
    result.cached_tokens = meta.get("cached_tokens")
    result.spec_verify_ct = meta.get("spec_verify_ct")
    reason = result.finish_reason.get("type") if isinstance(result.finish_reason, dict) else None
    if reason == "abort":
        result.error = f"aborted by the server: {json.dumps(result.finish_reason)[:300]}"
        return result
    if t_first is None:
        result.error = "no token was streamed"
        return result
    result.ok = True
    result.ttft_s = t_first - t0
    result.latency_s = end - t0
    if result.completion_tokens > 1:
        result.tpot_s = (t_final - t_first) / (result.completion_tokens - 1)
    return result


async def run_level(base_url: str, label: str, prompts: Sequence[D.Prompt], concurrency: int,
                    request_timeout: float, max_new_tokens: Sequence[int],
                    ignore_eos: bool = True, rids: Sequence[str] | None = None,
                    ) -> tuple[float, list[RequestResult]]:
    """Closed loop: ``concurrency`` clients share the prompt list in order."""
    import aiohttp

    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(prompts)):
        queue.put_nowait(i)
    results: list[RequestResult | None] = [None] * len(prompts)
    counts = {"done": 0, "failed": 0}
    last_report = [time.monotonic()]
    timeout = aiohttp.ClientTimeout(total=request_timeout)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        t_level = time.perf_counter()

        async def client() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                r = await send_request(session, base_url, prompts[i], max_new_tokens[i], t_level,
                                       ignore_eos, rids[i] if rids else None)
                results[i] = r
                counts["done"] += 1
                counts["failed"] += not r.ok
                if not r.ok:
                    log(f"{label}: request {r.prompt_id} failed: {r.error}")
                now = time.monotonic()
                if counts["done"] == len(prompts) or now - last_report[0] >= 15:
                    last_report[0] = now
                    log(f"{label}: {counts['done']}/{len(prompts)} requests done, "
                        f"{counts['failed']} failed, {time.perf_counter() - t_level:.1f} s")

        await asyncio.gather(*(client() for _ in range(concurrency)))
        duration = time.perf_counter() - t_level
    return duration, [r for r in results if r is not None]


# ---------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (q in [0, 100])."""
    if not values:
        return math.nan
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


@dataclass
class LevelSummary:
    concurrency: int
    requests: int
    failed: int
    short: int  # successful requests that produced fewer/more tokens than max_new_tokens
    duration_s: float
    output_tokens: int
    output_tok_s: float
    req_s: float
    ttft_mean_ms: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    tpot_mean_ms: float
    # output tokens per verify step over the speculative requests; nan without speculation
    accept_length: float = math.nan


def summarize(concurrency: int, duration: float, results: Sequence[RequestResult]) -> LevelSummary:
    ok = [r for r in results if r.ok]
    ttft = [r.ttft_s * 1e3 for r in ok]
    tpot = [r.tpot_s * 1e3 for r in ok if r.tpot_s is not None]
    out_tokens = sum(r.completion_tokens for r in ok)
    spec = [r for r in ok if r.spec_verify_ct]
    verify_steps = sum(r.spec_verify_ct for r in spec)
    return LevelSummary(
        concurrency=concurrency,
        requests=len(results),
        failed=len(results) - len(ok),
        short=sum(r.completion_tokens != r.requested_tokens for r in ok),
        duration_s=duration,
        output_tokens=out_tokens,
        output_tok_s=out_tokens / duration if duration > 0 else math.nan,
        req_s=len(ok) / duration if duration > 0 else math.nan,
        ttft_mean_ms=_mean(ttft),
        ttft_p50_ms=percentile(ttft, 50),
        ttft_p99_ms=percentile(ttft, 99),
        tpot_mean_ms=_mean(tpot),
        accept_length=sum(r.completion_tokens for r in spec) / verify_steps if verify_steps else math.nan,
    )


@dataclass
class SystemRun:
    name: str
    launcher: list[str]
    argv: list[str]
    env: dict[str, str]
    command: str = ""
    port: int | None = None
    log_path: str | None = None
    start_error: str | None = None
    start_s: float | None = None
    server_version: str | None = None
    # 1-minute load average when the measurements started and ended: on a shared
    # machine, a load above the CPU count means the figures were disturbed.
    load_start: float | None = None
    load_end: float | None = None
    warmup: list[RequestResult] = field(default_factory=list)
    levels: list[LevelSummary] = field(default_factory=list)
    requests: dict[int, list[RequestResult]] = field(default_factory=dict)


def _fmt(x: float, digits: int = 1) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _ratio(a: float, b: float) -> str:
    if a is None or b is None or math.isnan(a) or math.isnan(b) or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


METRICS = [  # (field, column title, digits)
    ("output_tok_s", "output tok/s", 1),
    ("req_s", "req/s", 2),
    ("ttft_mean_ms", "mean TTFT ms", 0),
    ("ttft_p50_ms", "p50 TTFT ms", 0),
    ("ttft_p99_ms", "p99 TTFT ms", 0),
    ("tpot_mean_ms", "mean TPOT ms", 1),
    ("accept_length", "accept len", 2),
]


def results_table(runs: Sequence[SystemRun]) -> str:
    head = ["system", "concurrency", "requests", "failed"] + [t for _, t, _ in METRICS]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in runs:
        if run.start_error:
            rows.append(f"| {run.name} | - | - | - | " + " | ".join(["did not start"] * len(METRICS)) + " |")
            continue
        for s in run.levels:
            cells = [run.name, str(s.concurrency), str(s.requests), str(s.failed)]
            cells += [_fmt(getattr(s, f), d) for f, _, d in METRICS]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def ratio_table(runs: Sequence[SystemRun], baseline: str) -> str | None:
    base = next((r for r in runs if r.name == baseline and not r.start_error), None)
    others = [r for r in runs if r.name != baseline and not r.start_error]
    if base is None or not others:
        return None
    head = ["ratio", "concurrency"] + [t.replace(" ms", "") for _, t, _ in METRICS]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base_levels = {s.concurrency: s for s in base.levels}
    for run in others:
        for s in run.levels:
            b = base_levels.get(s.concurrency)
            if b is None:
                continue
            cells = [f"{run.name}/{baseline}", str(s.concurrency)]
            cells += [_ratio(getattr(s, f), getattr(b, f)) for f, _, _ in METRICS]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


# ---------------------------------------------------------------------------
# Environment description
# ---------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _mem_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    return None


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info(cpu: bool) -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "mem_gib": _mem_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gpu": None,
    }
    if not cpu:
        with contextlib.suppress(Exception):
            import torch

            info["gpu"] = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return info


def software_info() -> dict[str, str]:
    return {d: _version(d) for d in ("sglang", "sglang-arctic", "torch", "transformers")}


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def markdown_report(meta: dict[str, Any], runs: Sequence[SystemRun], baseline: str) -> str:
    m, sw, wl = meta["machine"], meta["software"], meta["workload"]
    mem = f", {m['mem_gib']:.0f} GiB" if m.get("mem_gib") else ""
    lines = [
        "# Side-by-side serving benchmark",
        "",
        f"- Command: `{meta['command']}`",
        f"- Date: {meta['date']}",
        f"- Machine: {m['nproc']} CPUs usable (nproc), {m['cpu_model']}{mem}"
        + (f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU"),
        f"- Software: SGLang {sw['sglang']}, sglang-arctic {sw['sglang-arctic']}, "
        f"torch {sw['torch']}, transformers {sw['transformers']}, Python {m['python']}",
        f"- Model: `{meta['model_path']}`",
        f"- Workload: {wl['dataset']} (seed {wl['seed']}), {wl['prompt_tokens_range']} prompt tokens"
        f"{', chat template' if wl['chat_template'] else ', no chat template'}; "
        f"max_new_tokens = recorded reply length (where the dataset has one) capped at {wl['max_tokens']}; "
        f"mean {wl['mean_prompt_tokens']:.0f} prompt / {wl['mean_output_tokens']:.0f} output tokens; "
        f"prompts per concurrency level: {wl['prompts_per_level']} (a fresh slice per level)",
        "- Requests: native `/generate`, streaming, `temperature=0`, "
        + ("`ignore_eos=true` (every system generates exactly max_new_tokens)"
           if wl.get("ignore_eos", True) else
           "`ignore_eos=false` (generation stops at the end of turn or max_new_tokens)")
        + ", closed loop with `concurrency` clients, "
        f"{wl['warmup']} warm-up request(s) per server",
        "",
        "## Systems",
        "",
    ]
    for run in runs:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in run.env.items())
        extra = []
        if run.server_version:
            extra.append(f"server {run.server_version}")
        if run.load_start is not None and run.load_end is not None:
            extra.append(f"load average {run.load_start:.1f} at start, {run.load_end:.1f} at end")
        lines.append(f"- **{run.name}**: `{env + ' ' if env else ''}{run.command}`"
                     + (f" ({'; '.join(extra)})" if extra else ""))
    lines += ["", "## Results", "", results_table(runs), ""]
    ratios = ratio_table(runs, baseline)
    if ratios:
        lines += [
            f"Ratios to {baseline} (throughput: higher is better; TTFT and TPOT: lower is better):",
            "",
            ratios,
            "",
        ]
    lines += [
        "TTFT: send to first streamed token; TPOT: (last - first token time) / (tokens - 1) per "
        "request, averaged; throughput over the wall time of each level. Failed requests are "
        "excluded from the figures and counted in `failed`.",
        "",
    ]
    notes = []
    for run in runs:
        if run.start_error:
            notes.append(f"- {run.name} did not start: {run.start_error.splitlines()[0]}")
        for s in run.levels:
            if s.short:
                notes.append(f"- {run.name} at concurrency {s.concurrency}: {s.short} request(s) "
                             "returned a token count other than max_new_tokens")
        loads = [x for x in (run.load_start, run.load_end) if x is not None]
        if loads and max(loads) > m["nproc"]:
            notes.append(f"- {run.name}: the load average reached {max(loads):.1f} on {m['nproc']} CPUs "
                         "during its measurements; other processes shared the machine")
        if any(not r.ok for r in run.warmup):
            notes.append(f"- {run.name}: the warm-up request failed")
    if notes:
        lines += ["## Notes", "", *notes, ""]
    return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    values = [int(x) for x in text.split(",") if x.strip()]
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmark.side_by_side",
        description="Serve the same model with vanilla SGLang and sglang_arctic, one after the other, "
        "and compare throughput and latency on the same real prompts.",
        epilog='Flag values that start with "--" need the "=" form: --common-flags="--max-running-requests 8".',
    )
    p.add_argument("--systems", default="vanilla,arctic",
                   help=f"comma-separated, run in this order; known: {', '.join(SYSTEMS)} (default: %(default)s)")
    p.add_argument("--baseline", default="vanilla", help="denominator of the ratios (default: %(default)s)")
    p.add_argument("--model-path", default=None,
                   help="model served by every system (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--common-flags", default="", help="server flags for every system (one shell-quoted string)")
    for name in SYSTEMS:
        p.add_argument(f"--{name}-flags", default="", help=f"server flags for {name} only")
    p.add_argument("--concurrency", type=_int_list, default=_int_list(DEFAULT_CONCURRENCY),
                   help=f"concurrency levels (default: {DEFAULT_CONCURRENCY})")
    p.add_argument("--num-prompts", type=int, default=None,
                   help="prompts per concurrency level (default: max(8, 2 x concurrency))")
    p.add_argument("--dataset", default="sharegpt", choices=sorted(D.LOADERS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-prompt-tokens", type=int, default=4)
    p.add_argument("--max-prompt-tokens", type=int, default=1024)
    p.add_argument("--max-tokens", type=int, default=256,
                   help="cap on max_new_tokens (default: %(default)s); requests get the recorded reply length")
    p.add_argument("--ignore-eos", action=argparse.BooleanOptionalAction, default=True,
                   help="generate exactly max_new_tokens (default); --no-ignore-eos stops at the "
                   "model's end of turn, as real traffic does (use it for speculation, whose "
                   "acceptance depends on what the model really writes)")
    p.add_argument("--no-chat-template", action="store_true",
                   help="send the raw user message instead of the chat-template rendering")
    p.add_argument("--warmup", type=int, default=1, help="warm-up requests per server (default: %(default)s)")
    p.add_argument("--port", type=int, default=0,
                   help=f"server port (default: a free one in {PORT_RANGE[0]}..{PORT_RANGE[1]})")
    p.add_argument("--server-timeout", type=float, default=600.0, help="seconds to wait for a server to start")
    p.add_argument("--request-timeout", type=float, default=1800.0, help="seconds per request")
    p.add_argument("--log-dir", default=None, help="folder for the server logs (default: the temp folder)")
    p.add_argument("--output", default=None, help="write the Markdown report here (e.g. docs/benchmarks/x.md)")
    p.add_argument("--json", default=None, help="write the raw results (every request) as JSON here")
    args = p.parse_args(argv)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in args.systems if s not in SYSTEMS]
    if unknown or not args.systems:
        p.error(f"unknown system(s) {unknown}; known: {', '.join(SYSTEMS)}")
    if len(set(args.systems)) != len(args.systems):
        p.error("a system is listed twice")
    if args.num_prompts is not None and args.num_prompts < 1:
        p.error("--num-prompts must be >= 1")
    return args


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


async def _bench_server(run: SystemRun, base_url: str, warmups: Sequence[D.Prompt],
                        slices: Sequence[tuple[int, list[D.Prompt]]], request_timeout: float,
                        ignore_eos: bool = True) -> None:
    if warmups:
        log(f"{run.name}: {len(warmups)} warm-up request(s)")
        _, run.warmup = await run_level(
            base_url, f"{run.name} warm-up", warmups, 1, request_timeout,
            [min(p.output_tokens, WARMUP_MAX_TOKENS) for p in warmups],
        )
    for concurrency, prompts in slices:
        label = f"{run.name} c={concurrency}"
        log(f"{label}: {len(prompts)} requests, "
            f"{sum(p.output_tokens for p in prompts)} output tokens in all")
        duration, results = await run_level(
            base_url, label, prompts, concurrency, request_timeout, [p.output_tokens for p in prompts],
            ignore_eos,
        )
        summary = summarize(concurrency, duration, results)
        run.levels.append(summary)
        run.requests[concurrency] = results
        log(f"{label}: {summary.output_tok_s:.1f} output tok/s, {summary.req_s:.2f} req/s, "
            f"mean TTFT {summary.ttft_mean_ms:.0f} ms, mean TPOT {summary.tpot_mean_ms:.1f} ms, "
            f"{summary.failed} failed")


def _loadavg() -> float | None:
    with contextlib.suppress(OSError, AttributeError):
        return os.getloadavg()[0]
    return None


def _server_version(base_url: str) -> str | None:
    import requests

    with contextlib.suppress(Exception):
        return requests.get(base_url + "/server_info", timeout=10).json().get("version")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # stop servers on SIGTERM too

    cpu = not cuda_usable()
    if args.model_path is None:
        from sglang_arctic.models.default_model import materialize

        args.model_path = str(materialize())
    log(f"model: {args.model_path}")

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model_path)
    per_level = [args.num_prompts or max(8, 2 * c) for c in args.concurrency]
    options = D.SampleOptions(
        seed=args.seed, min_prompt_tokens=args.min_prompt_tokens, max_prompt_tokens=args.max_prompt_tokens,
        max_output_tokens=args.max_tokens, chat_template=not args.no_chat_template,
    )
    try:
        prompts = D.load(args.dataset, tokenizer, args.warmup + sum(per_level), options)
    except D.DatasetUnavailable as exc:
        log(f"error: {exc}")
        return 2
    warmups, rest = prompts[: args.warmup], prompts[args.warmup :]
    slices, offset = [], 0
    for c, n in zip(args.concurrency, per_level):
        slices.append((c, rest[offset : offset + n]))
        offset += n
    log(f"{len(prompts)} {args.dataset} prompts: mean {_mean([p.prompt_tokens for p in rest]):.0f} prompt "
        f"tokens, mean {_mean([p.output_tokens for p in rest]):.0f} output tokens")

    common = shlex.split(args.common_flags)
    runs: list[SystemRun] = []
    for name in args.systems:
        spec = build_system(name, args.model_path, common + shlex.split(getattr(args, f"{name}_flags")), cpu)
        runs.append(SystemRun(name, spec.launcher, spec.argv, spec.env))

    try:
        for run, name in zip(runs, args.systems):
            spec = SystemSpec(name, run.launcher, run.argv, run.env)
            port = args.port or pick_port()
            run.port = port
            run.command = shlex.join([*spec.launcher, *spec.argv, "--port", str(port)])
            log(f"{name}: starting `{run.command}`")
            t0 = time.monotonic()
            try:
                handle = start_server(spec, port, args.server_timeout, args.log_dir)
            except Exception as exc:  # noqa: BLE001 - report and go on with the other systems
                run.start_error = str(exc)
                log(f"{name}: failed to start:\n{exc}")
                continue
            run.start_s = time.monotonic() - t0
            run.log_path = str(handle.log_path)
            log(f"{name}: ready after {run.start_s:.0f} s at {handle.base_url} (log: {handle.log_path})")
            try:
                run.server_version = _server_version(handle.base_url)
                run.load_start = _loadavg()
                asyncio.run(_bench_server(run, handle.base_url, warmups, slices, args.request_timeout,
                                          args.ignore_eos))
                run.load_end = _loadavg()
            finally:
                log(f"{name}: stopping the server")
                with _sigint_deferred():
                    code = handle.stop()
                log(f"{name}: server stopped (exit code {code})")
    except KeyboardInterrupt:
        log("interrupted; servers stopped; the levels finished so far follow (no files written)")
        print(results_table(runs))
        return 130

    meta = {
        "command": shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv])),
        "date": _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(cpu),
        "software": software_info(),
        "model_path": args.model_path,
        "workload": {
            "dataset": args.dataset,
            "seed": args.seed,
            "prompt_tokens_range": f"{args.min_prompt_tokens}..{args.max_prompt_tokens}",
            "chat_template": not args.no_chat_template,
            "max_tokens": args.max_tokens,
            "ignore_eos": args.ignore_eos,
            "concurrency": args.concurrency,
            "prompts_per_level": per_level,
            "warmup": args.warmup,
            "mean_prompt_tokens": _mean([p.prompt_tokens for p in rest]),
            "mean_output_tokens": _mean([p.output_tokens for p in rest]),
            "sampling_params": _sampling_params(0, args.ignore_eos) | {"max_new_tokens": "per prompt"},
        },
        "baseline": args.baseline,
    }
    report = markdown_report(meta, runs, args.baseline)
    print(results_table(runs))
    ratios = ratio_table(runs, args.baseline)
    if ratios:
        print()
        print(ratios)
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report + "\n")
        log(f"wrote {out}")
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        raw = {
            "meta": meta,
            "prompts": [asdict(p) for p in prompts],
            "systems": [
                asdict(run) | {"requests": {str(c): [asdict(r) for r in rs] for c, rs in run.requests.items()}}
                for run in runs
            ],
        }
        out.write_text(json.dumps(_jsonable(raw), indent=1) + "\n")
        log(f"wrote {out}")
    failed = sum(s.failed for run in runs for s in run.levels)
    if failed:
        log(f"{failed} request(s) failed; see the table")
    return 1 if failed or any(run.start_error for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
