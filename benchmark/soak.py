"""Soak (issue 2): an hour or more of mixed load on one server with every arctic
feature on, reporting memory growth, latency drift and errors.

The server is ``python -m sglang_arctic.launch_server`` on the default model
with SuffixDecoding speculation and learned length scheduling (Dynasor is
switched on per request). ``--clients`` closed-loop clients send a weighted mix
of real traffic (``KINDS``): greedy and sampled native ``/generate``, OpenAI chat
(plain, streamed, JSON-schema constrained), regex-constrained output, ``n=2``
completions, Dynasor-probed reasoning, streams the client cancels mid-queue or
mid-stream, and bad bodies that must get a 4xx. Prompts are real (ShareGPT first
turns and short tasks over real texts, ``benchmark/datasets.py``)::

    .venv/bin/python -m benchmark.soak --minutes 60 --out benchmark/results/soak.json

Reported:

- **RSS slope**: the summed resident memory of the launcher and every child
  (sampled every ``--sample-seconds``), least-squares slope in MiB per hour,
  after ``--warmup-minutes``;
- **latency drift**: p50/p99 end-to-end latency per window (after the
  warm-up) of the ``probe``
  class (a fixed greedy request of fixed length, so that windows compare like
  with like) and of all completed requests; drift = last window's p99 / first's;
- **errors**: every answer that breaks the kind's contract (a 5xx, an
  unexpected status, a broken connection, no answer within ``--request-timeout``,
  output that violates its constraint), by kind, with the first messages;
- at the end: the server's own running + waiting count must return to 0 and
  the server must still be up.

This is a benchmark: it asserts nothing, but exits 1 when any error was counted
or the server did not return to idle, so a script can gate on it.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import psutil
import requests

if __package__ in (None, ""):
    _HERE = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    sys.path.insert(0, str(_HERE.parent))

from benchmark import datasets as D  # noqa: E402
from benchmark.side_by_side import percentile  # noqa: E402
from sglang_arctic.testing.server import launch, requests_in_flight  # noqa: E402

SERVER_FLAGS = ["--arctic-suffix-decoding", "--arctic-schedule", "ltr", "--enable-metrics"]
PROBE_TEXT = "<|im_start|>user\nName three rivers of Europe.<|im_end|>\n<|im_start|>assistant\n"
PROBE_TOKENS = 32
JSON_SCHEMA = {
    "type": "object",
    "properties": {"topic": {"type": "string", "maxLength": 40}, "words": {"type": "integer"}},
    "required": ["topic", "words"],
    "additionalProperties": False,
}
YES_NO = "(yes|no)"
BAD_BODIES = [
    {"text": "", "sampling_params": {"max_new_tokens": 4}},
    {"text": "hi", "sampling_params": {"max_new_tokens": -1}},
    {"text": "hi", "sampling_params": {"max_new_tokens": 4, "no_such_knob": 1}},
    {"text": "hi", "sampling_params": {"max_new_tokens": 4, "temperature": "hot"}},
    {"input_ids": [10 ** 9], "sampling_params": {"max_new_tokens": 4}},
]


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Outcome:
    kind: str
    start: float  # seconds since the soak started
    latency: float
    ok: bool
    status: int | None = None
    output_tokens: int = 0
    error: str = ""


class ContractError(Exception):
    """The answer arrived but breaks the request kind's contract."""


@dataclass
class Client:
    base_url: str
    prompts: Sequence[D.Prompt]
    timeout: float
    rng: random.Random
    session: requests.Session = field(default_factory=requests.Session)

    def post(self, path: str, body: dict, stream: bool = False) -> requests.Response:
        return self.session.post(self.base_url + path, json=body, stream=stream, timeout=self.timeout)

    def prompt(self) -> D.Prompt:
        return self.rng.choice(self.prompts)

    def chatml(self, text: str) -> str:
        return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"

    def ok_json(self, r: requests.Response) -> dict:
        if r.status_code != 200:
            raise ContractError(f"status {r.status_code}: {r.text[:200]}")
        return r.json()

    # Each kind returns its output token count, or raises.

    def probe(self) -> int:
        out = self.ok_json(self.post("/generate", {
            "text": PROBE_TEXT,
            "sampling_params": {"max_new_tokens": PROBE_TOKENS, "temperature": 0, "ignore_eos": True}}))
        n = out["meta_info"]["completion_tokens"]
        if n != PROBE_TOKENS:
            raise ContractError(f"probe produced {n} tokens, asked {PROBE_TOKENS}")
        return n

    def generate_greedy(self) -> int:
        p = self.prompt()
        out = self.ok_json(self.post("/generate", {
            "text": self.chatml(p.text), "sampling_params": {"max_new_tokens": p.output_tokens, "temperature": 0}}))
        return out["meta_info"]["completion_tokens"]

    def generate_sampled(self) -> int:
        p = self.prompt()
        out = self.ok_json(self.post("/generate", {
            "text": self.chatml(p.text),
            "sampling_params": {"max_new_tokens": p.output_tokens, "temperature": 0.8, "top_p": 0.95}}))
        return out["meta_info"]["completion_tokens"]

    def chat(self) -> int:
        out = self.ok_json(self.post("/v1/chat/completions", {
            "model": "default", "messages": [{"role": "user", "content": self.prompt().text}],
            "max_tokens": 96, "temperature": 0.7}))
        return out["usage"]["completion_tokens"]

    def chat_stream(self) -> int:
        body = {"model": "default", "messages": [{"role": "user", "content": self.prompt().text}],
                "max_tokens": 96, "temperature": 0, "stream": True,
                "stream_options": {"include_usage": True}}
        with self.post("/v1/chat/completions", body, stream=True) as r:
            if r.status_code != 200:
                raise ContractError(f"status {r.status_code}: {r.text[:200]}")
            usage, done = None, False
            for line in r.iter_lines():
                if not line.startswith(b"data: "):
                    continue
                data = line[6:]
                if data == b"[DONE]":
                    done = True
                    break
                event = json.loads(data)
                if "error" in event:
                    raise ContractError(f"error event: {event['error']}")
                usage = event.get("usage") or usage
        if not done or usage is None:
            raise ContractError("stream ended without [DONE] and usage")
        return usage["completion_tokens"]

    def chat_json(self) -> int:
        out = self.ok_json(self.post("/v1/chat/completions", {
            "model": "default", "max_tokens": 64, "temperature": 0,
            "messages": [{"role": "user", "content": "Give the topic of this text and its word count as JSON: "
                          + self.prompt().text[:400]}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "summary", "schema": JSON_SCHEMA}}}))
        choice = out["choices"][0]
        if choice["finish_reason"] == "stop":  # a cut answer may be incomplete JSON
            value = json.loads(choice["message"]["content"])
            if set(value) != {"topic", "words"} or not isinstance(value["words"], int):
                raise ContractError(f"JSON answer breaks its schema: {value!r}")
        return out["usage"]["completion_tokens"]

    def regex(self) -> int:
        out = self.ok_json(self.post("/generate", {
            "text": self.chatml("Answer yes or no: is this text about a person? " + self.prompt().text[:400]),
            "sampling_params": {"max_new_tokens": 8, "temperature": 0, "regex": YES_NO}}))
        if not re.fullmatch(YES_NO, out["text"]):
            raise ContractError(f"regex answer {out['text']!r} does not match {YES_NO}")
        return out["meta_info"]["completion_tokens"]

    def completion_n2(self) -> int:
        out = self.ok_json(self.post("/v1/completions", {
            "model": "default", "prompt": self.chatml(self.prompt().text), "n": 2,
            "max_tokens": 48, "temperature": 0.7}))
        if len(out["choices"]) != 2:
            raise ContractError(f"n=2 gave {len(out['choices'])} choices")
        return out["usage"]["completion_tokens"]

    def dynasor(self) -> int:
        out = self.ok_json(self.post("/generate", {
            "text": self.chatml("Solve step by step, then give the answer: " + self.prompt().text[:300]),
            "sampling_params": {"max_new_tokens": 160, "temperature": 0},
            "dynasor": {"probe_interval": 16, "certainty_window": 3}}))
        if "dynasor" not in out["meta_info"]:
            raise ContractError("no dynasor report in meta_info")
        return out["meta_info"]["completion_tokens"]

    def cancel(self) -> int:
        """A stream the client drops: mid-queue (before its first chunk) or mid-stream."""
        body = {"text": self.chatml(self.prompt().text), "stream": True,
                "sampling_params": {"max_new_tokens": 256, "temperature": 0, "ignore_eos": True}}
        chunks_to_read = self.rng.choice([0, 1, 3, 8])
        r = self.post("/generate", body, stream=True)
        try:
            if r.status_code != 200:
                raise ContractError(f"status {r.status_code}: {r.text[:200]}")
            if chunks_to_read:
                read = 0
                for line in r.iter_lines():
                    if line.startswith(b"data: "):
                        read += 1
                        if read >= chunks_to_read:
                            break
        finally:
            r.close()
        return 0

    def bad(self) -> int:
        r = self.post("/generate", self.rng.choice(BAD_BODIES))
        if not 400 <= r.status_code < 500:
            raise ContractError(f"bad body answered {r.status_code}: {r.text[:200]}")
        return 0


# kind -> (weight, method)
KINDS: dict[str, tuple[int, Callable[[Client], int]]] = {
    "probe": (20, Client.probe),
    "generate_greedy": (12, Client.generate_greedy),
    "generate_sampled": (8, Client.generate_sampled),
    "chat": (10, Client.chat),
    "chat_stream": (10, Client.chat_stream),
    "chat_json": (8, Client.chat_json),
    "regex": (6, Client.regex),
    "completion_n2": (4, Client.completion_n2),
    "dynasor": (8, Client.dynasor),
    "cancel": (10, Client.cancel),
    "bad": (4, Client.bad),
}


def process_tree_rss(pid: int) -> dict[str, int]:
    """Resident bytes of the launcher and each live descendant, by 'name:pid'."""
    out = {}
    try:
        root = psutil.Process(pid)
        for p in [root, *root.children(recursive=True)]:
            try:
                out[f"{p.name()}:{p.pid}"] = p.memory_info().rss
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return out


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per hour."""
    n = len(points)
    if n < 2:
        return math.nan
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    cov = sum((t - mx) * (v - my) for t, v in points)
    return cov / var * 3600 if var else math.nan


def window_stats(outcomes: Sequence[Outcome], begin: float, end: float, windows: int) -> list[dict]:
    """Per-window figures of the requests started in [begin, end) seconds."""
    rows = []
    width = (end - begin) / windows
    for w in range(windows):
        lo, hi = begin + w * width, begin + (w + 1) * width
        inside = [o for o in outcomes if lo <= o.start < hi]
        probe = [o.latency for o in inside if o.kind == "probe" and o.ok]
        completed = [o.latency for o in inside if o.ok and o.kind not in ("cancel", "bad")]
        rows.append({
            "window_min": [round(lo / 60, 1), round(hi / 60, 1)],
            "requests": len(inside),
            "errors": sum(not o.ok for o in inside),
            "probe_p50_s": percentile(probe, 50), "probe_p99_s": percentile(probe, 99),
            "all_p50_s": percentile(completed, 50), "all_p99_s": percentile(completed, 99),
            "output_tokens": sum(o.output_tokens for o in inside),
        })
    return rows


def run_client(client: Client, t0: float, stop_at: float, outcomes: list[Outcome], lock: threading.Lock,
               think: float) -> None:
    names = list(KINDS)
    weights = [KINDS[k][0] for k in names]
    while time.monotonic() < stop_at:
        kind = client.rng.choices(names, weights)[0]
        start = time.monotonic()
        try:
            tokens = KINDS[kind][1](client)
            outcome = Outcome(kind, start - t0, time.monotonic() - start, True, 200, tokens)
        except ContractError as e:
            outcome = Outcome(kind, start - t0, time.monotonic() - start, False, error=str(e)[:300])
        except requests.RequestException as e:  # refused, reset, or no answer within the timeout
            outcome = Outcome(kind, start - t0, time.monotonic() - start, False,
                              error=f"{type(e).__name__}: {str(e)[:240]}")
        except (ValueError, KeyError, TypeError) as e:  # an answer of the wrong shape
            outcome = Outcome(kind, start - t0, time.monotonic() - start, False,
                              error=f"malformed answer: {type(e).__name__}: {e}"[:300])
        with lock:
            outcomes.append(outcome)
        time.sleep(client.rng.uniform(0, think))


def load_prompts(model_path: str, num: int, seed: int) -> list[D.Prompt]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    options = D.SampleOptions(seed=seed, max_prompt_tokens=512, max_output_tokens=160, chat_template=False)
    return D.load("mixed", tokenizer, num, options)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--think", type=float, default=0.5, help="max random pause between a client's requests (s)")
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sample-seconds", type=float, default=30.0)
    ap.add_argument("--warmup-minutes", type=float, default=5.0)
    ap.add_argument("--windows", type=int, default=6)
    ap.add_argument("--request-timeout", type=float, default=180.0)
    ap.add_argument("--out", type=Path, default=None, help="JSON report")
    ap.add_argument("--server-flags", default=" ".join(SERVER_FLAGS))
    args = ap.parse_args(argv)

    from sglang_arctic.models.default_model import model_dir

    model_path = str(model_dir())
    prompts = load_prompts(model_path, args.prompts, args.seed)
    log(f"{len(prompts)} prompts; starting the server with {args.server_flags}")
    server = launch(args.server_flags.split(), timeout=300)
    outcomes: list[Outcome] = []
    samples: list[dict] = []
    lock = threading.Lock()
    try:
        t0 = time.monotonic()
        stop_at = t0 + args.minutes * 60
        threads = [
            threading.Thread(target=run_client, daemon=True, args=(
                Client(server.base_url, prompts, args.request_timeout, random.Random(args.seed * 1000 + i)),
                t0, stop_at, outcomes, lock, args.think))
            for i in range(args.clients)
        ]
        for t in threads:
            t.start()
        next_sample = t0
        while any(t.is_alive() for t in threads):
            now = time.monotonic()
            if now >= next_sample:
                rss = process_tree_rss(server.process.pid)
                samples.append({"t": now - t0, "rss_total": sum(rss.values()), "rss": rss})
                with lock:
                    done, errors = len(outcomes), sum(not o.ok for o in outcomes)
                if len(samples) % max(1, round(60 / args.sample_seconds)) == 1:
                    log(f"{(now - t0) / 60:5.1f}/{args.minutes:g} min: {done} requests, {errors} errors, "
                        f"RSS {sum(rss.values()) / 2**20:.0f} MiB over {len(rss)} processes")
                next_sample += args.sample_seconds
            if not server.alive():
                log("the server exited during the soak")
                break
            time.sleep(0.5)
        for t in threads:
            t.join(timeout=args.request_timeout + 10)
        duration = time.monotonic() - t0
        # Idle again: the server's own count of running + waiting requests.
        idle_after = None
        deadline = time.monotonic() + 60
        while server.alive() and time.monotonic() < deadline:
            if requests_in_flight(server.base_url) == 0:
                idle_after = round(time.monotonic() - t0 - duration, 1)
                break
            time.sleep(1)
        alive = server.alive()
    finally:
        server.stop()

    warm = [(s["t"], s["rss_total"] / 2**20) for s in samples if s["t"] >= args.warmup_minutes * 60]
    # Windows start after the warm-up, which holds one-off costs (grammar
    # compilation, first-use allocations) that would inflate the first window.
    windows = window_stats(outcomes, min(args.warmup_minutes * 60, duration / 2), duration, args.windows)
    errors = [o for o in outcomes if not o.ok]
    by_kind = {k: {"requests": sum(o.kind == k for o in outcomes), "errors": sum(o.kind == k for o in errors)}
               for k in KINDS}
    first_p99, last_p99 = windows[0]["probe_p99_s"], windows[-1]["probe_p99_s"]
    report = {
        "command": " ".join(sys.argv),
        "server_flags": args.server_flags,
        "minutes": round(duration / 60, 1),
        "clients": args.clients,
        "requests": len(outcomes),
        "errors": len(errors),
        "first_errors": [asdict(o) for o in errors[:20]],
        "by_kind": by_kind,
        "output_tokens": sum(o.output_tokens for o in outcomes),
        "rss_mib_first": warm[0][1] if warm else math.nan,
        "rss_mib_last": warm[-1][1] if warm else math.nan,
        "rss_mib_max": max((v for _, v in warm), default=math.nan),
        "rss_slope_mib_per_hour": slope_per_hour(warm),
        "rss_slope_second_half_mib_per_hour": slope_per_hour(warm[len(warm) // 2:]),
        "probe_p99_drift": last_p99 / first_p99 if first_p99 else math.nan,
        "windows": windows,
        "idle_after_s": idle_after,
        "server_alive_at_end": alive,
        "rss_samples": samples,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
        log(f"report written to {args.out}")
    print(render(report))
    return 0 if not errors and idle_after is not None and alive else 1


def render(report: dict) -> str:
    lines = [
        f"soak: {report['minutes']} min, {report['clients']} clients, {report['requests']} requests "
        f"({report['output_tokens']} output tokens), {report['errors']} errors; "
        f"idle again {report['idle_after_s']} s after the load; server up at the end: {report['server_alive_at_end']}",
        f"RSS (all server processes, after warm-up): {report['rss_mib_first']:.0f} -> {report['rss_mib_last']:.0f} MiB, "
        f"max {report['rss_mib_max']:.0f}; slope {report['rss_slope_mib_per_hour']:+.1f} MiB/h "
        f"({report['rss_slope_second_half_mib_per_hour']:+.1f} MiB/h over the second half)",
        f"probe p99 drift (last window / first): {report['probe_p99_drift']:.2f}x",
        "",
        "| window (min) | requests | errors | probe p50 (s) | probe p99 (s) | all p50 (s) | all p99 (s) | output tokens |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for w in report["windows"]:
        lo, hi = w["window_min"]
        lines.append(f"| {lo:g}-{hi:g} | {w['requests']} | {w['errors']} | {w['probe_p50_s']:.2f} | "
                     f"{w['probe_p99_s']:.2f} | {w['all_p50_s']:.2f} | {w['all_p99_s']:.2f} | {w['output_tokens']} |")
    lines += ["", "| kind | requests | errors |", "|---|---|---|"]
    lines += [f"| {k} | {v['requests']} | {v['errors']} |" for k, v in report["by_kind"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
