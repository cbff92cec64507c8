"""Decode throughput of a running SGLang-compatible server, N concurrent streams.

A self-contained client (standard library only); it starts nothing. Each of
``--concurrency`` streams sends ``--rounds`` requests one after another to
``/generate`` with fixed prompts, greedy sampling and ``ignore_eos``, so every
request produces exactly ``--max-new-tokens`` tokens. Responses are streamed to
split the prefill (time to first token) from the decode phase.

Prints, per concurrency level:
  output tok/s   all output tokens / wall time (prefill included)
  decode tok/s   tokens after the first of each request / summed decode time
                 of the streams divided by the stream count (the steady
                 decode rate of the batch)

Example (compare attention backends on the same flags, one server at a time):

    SGLANG_USE_CPU_ENGINE=1 sglang serve --model-path M --device cpu \\
        --attention-backend arctic --max-total-tokens 32768 --port 32000
    python benchmark/attention_decode.py --url http://127.0.0.1:32000 \\
        --concurrency 1,16

Prompts are built deterministically from a fixed word list; their lengths
cycle through ``--prompt-words``. A per-run tag at the start of each prompt
keeps the server's prefix cache from serving one run's prompts to the next
(pass ``--tag ''`` to disable).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import threading
import time
import urllib.request

WORDS = (
    "the of and to in is was for on that with as by at from his her an which "
    "river mountain city market garden winter summer library engine signal "
    "history science music theory window kitchen station letter journey "
    "morning evening village harbor forest island bridge castle teacher doctor "
    "painter farmer sailor soldier merchant student"
).split()


def make_prompt(index: int, n_words: int, tag: str) -> str:
    rng = random.Random(1000 + index)
    body = " ".join(rng.choice(WORDS) for _ in range(n_words))
    head = f"[{tag} #{index}] " if tag else ""
    return head + "Continue this text: " + body


def generate(url: str, prompt: str, max_new_tokens: int, timeout: float):
    """Returns (ttft, total_time, completion_tokens)."""
    payload = {
        "text": prompt,
        "sampling_params": {
            "max_new_tokens": max_new_tokens,
            "temperature": 0,
            "ignore_eos": True,
        },
        "stream": True,
    }
    req = urllib.request.Request(
        url.rstrip("/") + "/generate",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    t0 = time.perf_counter()
    ttft = None
    tokens = 0
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            data = line[len("data:"):].strip()
            if data == "[DONE]":
                break
            msg = json.loads(data)
            if ttft is None:
                ttft = time.perf_counter() - t0
            tokens = msg.get("meta_info", {}).get("completion_tokens", tokens)
    return ttft or 0.0, time.perf_counter() - t0, tokens


def run_level(args, concurrency: int, tag: str):
    lengths = [int(x) for x in args.prompt_words.split(",")]
    results = []
    errors = []
    lock = threading.Lock()

    def stream(s: int):
        for r in range(args.rounds):
            idx = s * args.rounds + r
            prompt = make_prompt(idx, lengths[idx % len(lengths)], tag)
            try:
                out = generate(args.url, prompt, args.max_new_tokens, args.timeout)
            except Exception as exc:  # report, keep the others running
                with lock:
                    errors.append(repr(exc))
                return
            with lock:
                results.append(out)

    threads = [threading.Thread(target=stream, args=(s,)) for s in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"{len(errors)} request(s) failed, first: {errors[0]}")
    total_tokens = sum(n for _, _, n in results)
    decode_tokens = sum(max(n - 1, 0) for _, _, n in results)
    decode_time = sum(t - f for f, t, _ in results) / concurrency
    return {
        "concurrency": concurrency,
        "requests": len(results),
        "output_tokens": total_tokens,
        "wall_s": round(wall, 2),
        "output_tok_s": round(total_tokens / wall, 2),
        "decode_tok_s": round(decode_tokens / decode_time, 2) if decode_time > 0 else None,
        "median_ttft_s": round(statistics.median(f for f, _, _ in results), 3),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:32000")
    p.add_argument("--concurrency", default="1,16", help="comma-separated stream counts")
    p.add_argument("--rounds", type=int, default=1, help="requests per stream")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--prompt-words", default="80,400,900,1400",
                   help="comma-separated prompt lengths in words (cycled)")
    p.add_argument("--tag", default=None, help="prompt tag (default: the current time)")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--warmup", type=int, default=1, help="warm-up requests before measuring")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    args = p.parse_args(argv)
    tag = str(int(time.time())) if args.tag is None else args.tag

    for i in range(args.warmup):
        generate(args.url, make_prompt(10_000 + i, 16, tag), 8, args.timeout)

    rows = []
    for c in [int(x) for x in args.concurrency.split(",")]:
        row = run_level(args, c, tag)
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(
                f"streams={row['concurrency']:>3}  output tok/s={row['output_tok_s']:>8.2f}  "
                f"decode tok/s={row['decode_tok_s']:>8.2f}  median TTFT={row['median_ttft_s']:.2f}s  "
                f"({row['requests']} req, {row['output_tokens']} tok, {row['wall_s']} s)",
                flush=True,
            )
    return rows


if __name__ == "__main__":
    main()
