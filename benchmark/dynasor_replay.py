"""Dynasor trace replay (issue 6, benchmark a): how many reasoning tokens
probe-in-the-middle would save on recorded chains of thought, and at what
accuracy, next to the oracle exit.

Data: the CHAMP package's recorded 0-shot chain-of-thought transcripts
(``champ-dataset``: competition math problems with known final answers). For
each transcript the served model is probed over HTTP exactly as the live path
does it (``ProbeLoop``): the chat prompt + the first k tokens of the chain of
thought + the probe suffix, the same sampling parameters, at every multiple of
``--base-interval`` tokens and once at the end of the transcript. The probes
of one transcript go one after another, so the radix cache serves each one's
prefix, as in the live path.

Offline, for each (interval, window) setting (intervals are multiples of the
base), the probe history is replayed through the live stop rule
(``ProbeHistory.certain``):

- exit point: the first probe position at which the rule fires (else the
  transcript's end); tokens saved = transcript tokens after it;
- answer: the agreed answer at the exit, else the probe at the end
  ("reading the full transcript");
- accuracy: answers equivalent (``answers_equivalent``) to CHAMP's ``_answer``, or to one of
  the forms it lists ("C(10, 5), or equivalently 252").

The oracle exit of a transcript is the earliest probe point after which every
later probe (the end included) returns the end probe's answer; its savings
bound what any probing policy can save::

    .venv/bin/pip install --no-deps champ-dataset==1.0.0
    .venv/bin/python -m benchmark.dynasor_replay --limit 270 \\
        --json benchmark/results/dynasor/replay.json

A benchmark: it checks nothing; it exits non-zero only when the server failed
to start or probes failed.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

if __package__ in (None, ""):
    _HERE = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    sys.path.insert(0, str(_HERE.parent))

import requests  # noqa: E402

from benchmark import datasets as D  # noqa: E402

CHAMP_SPEC = "champ-dataset==1.0.0"
DEFAULT_SETTING = "GPT-4|0-Shot"
INTERVALS = (32, 64, 96, 128)
WINDOWS = (2, 3, 4, 5, 8)


@dataclass
class Transcript:
    id: str
    system: str
    user: str
    chain_of_thought: str
    truth: str


@dataclass
class ProbedTranscript:
    id: str
    truth: str
    tokens: int  # chain-of-thought tokens
    positions: list[int] = field(default_factory=list)  # base multiples, then the end
    texts: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    probe_prompt_tokens: int = 0
    probe_cached_tokens: int = 0


def champ_transcripts(setting: str, limit: int) -> list[Transcript]:
    path = D.package_data_file("champ_dataset", CHAMP_SPEC, "dataset_files", "v0.json")
    problems = json.loads(path.read_text())["problems"]
    out = []
    for pid in sorted(problems):
        problem = problems[pid]
        conversation = problem.get("conversations", {}).get(setting)
        if not conversation:
            continue
        messages = conversation["messages"]
        system = next((m["text"] for m in messages if m["role"] == "System"), "")
        user = next((m["text"] for m in messages if m["role"] == "User"), None)
        model = next((m["text"] for m in messages if m["role"].startswith("Model")), None)
        if user and model:
            out.append(Transcript(pid, system, user, model, str(problem["_answer"])))
    return out[:limit]


def probe_transcript(url: str, tokenizer, transcript: Transcript, settings, base_interval: int) -> ProbedTranscript:
    from sglang_arctic.reasoning.answers import extract_probe_answer
    from sglang_arctic.reasoning.probe_loop import probe_sampling_params

    messages = [{"role": "system", "content": transcript.system}, {"role": "user", "content": transcript.user}]
    prompt_text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer.encode(prompt_text, add_special_tokens=False)
    cot_ids = tokenizer.encode(transcript.chain_of_thought, add_special_tokens=False)
    suffix_ids = tokenizer.encode(settings.probe_suffix, add_special_tokens=False)
    result = ProbedTranscript(transcript.id, transcript.truth, len(cot_ids))
    positions = list(range(base_interval, len(cot_ids), base_interval)) + [len(cot_ids)]
    for position in positions:
        body = {"input_ids": list(prompt_ids) + cot_ids[:position] + suffix_ids,
                "sampling_params": probe_sampling_params(settings)}
        resp = requests.post(url + "/generate", json=body, timeout=600)
        if resp.status_code != 200:
            raise RuntimeError(f"probe of {transcript.id} at {position}: {resp.status_code} {resp.text[:300]}")
        out = resp.json()
        result.positions.append(position)
        result.texts.append(out["text"])
        result.answers.append(extract_probe_answer(out["text"]))
        result.probe_prompt_tokens += out["meta_info"]["prompt_tokens"]
        result.probe_cached_tokens += out["meta_info"].get("cached_tokens", 0)
    return result


@dataclass
class SettingResult:
    interval: int
    window: int
    exited: int  # transcripts stopped before their end
    tokens_saved_pct: float
    accuracy_pct: float
    probes_per_transcript: float


def replay(t: ProbedTranscript, interval: int, window: int) -> tuple[int, str, int]:
    """(exit position, answer, probes used) under the live stop rule."""
    from sglang_arctic.reasoning.certainty import ProbeHistory, ProbeRecord

    history = ProbeHistory(records=[])
    for position, text, answer in zip(t.positions[:-1], t.texts, t.answers):
        if position % interval:
            continue
        history.add(ProbeRecord(position=position, text=text, answer=answer, tokens=0))
        if history.certain(window):
            return position, answer, len(history.records)
    return t.tokens, t.answers[-1], len(history.records)


def oracle_exit(t: ProbedTranscript, base_interval: int) -> int:
    """Earliest probe point after which every later probe gives the end probe's answer."""
    from sglang_arctic.reasoning.answers import answers_equivalent

    final = t.answers[-1]
    if not final:
        return t.tokens
    exit_at = t.tokens
    for position, answer in reversed(list(zip(t.positions[:-1], t.answers[:-1]))):
        if not answers_equivalent(answer, final):
            break
        exit_at = position
    return exit_at


_ALTERNATIVE_SEPARATORS = re.compile(r",? or (?:equivalently|approximately|simply)?\s*|;\s*")


def matches_truth(answer: str, truth: str) -> bool:
    """CHAMP states some answers in several forms ("C(10, 5), or equivalently
    252"; "5/14, or approximately 35.7%"): any one of them counts."""
    from sglang_arctic.reasoning.answers import answers_equivalent

    forms = [truth] + [f.strip(" .") for f in _ALTERNATIVE_SEPARATORS.split(truth) if f.strip(" .")]
    return any(answers_equivalent(answer, form) for form in forms)


def evaluate(probed: Sequence[ProbedTranscript], base_interval: int) -> dict:
    total = sum(t.tokens for t in probed)
    full_correct = sum(matches_truth(t.answers[-1], t.truth) for t in probed)
    oracle_saved = sum(t.tokens - oracle_exit(t, base_interval) for t in probed)
    settings = []
    for interval in INTERVALS:
        if interval % base_interval:
            continue
        for window in WINDOWS:
            runs = [replay(t, interval, window) for t in probed]
            saved = sum(t.tokens - pos for t, (pos, _, _) in zip(probed, runs))
            correct = sum(matches_truth(ans, t.truth) for t, (_, ans, _) in zip(probed, runs))
            settings.append(SettingResult(
                interval, window, exited=sum(pos < t.tokens for t, (pos, _, _) in zip(probed, runs)),
                tokens_saved_pct=100.0 * saved / total, accuracy_pct=100.0 * correct / len(probed),
                probes_per_transcript=statistics.mean(n for _, _, n in runs)))
    prompt = sum(t.probe_prompt_tokens for t in probed)
    return {
        "transcripts": len(probed),
        "transcript_tokens": total,
        "median_transcript_tokens": statistics.median(t.tokens for t in probed),
        "full_transcript_accuracy_pct": 100.0 * full_correct / len(probed),
        "oracle_tokens_saved_pct": 100.0 * oracle_saved / total,
        "probe_cached_fraction": (sum(t.probe_cached_tokens for t in probed) / prompt) if prompt else 0.0,
        "settings": [asdict(s) for s in settings],
    }


def markdown(summary: dict) -> str:
    lines = [
        f"{summary['transcripts']} transcripts, {summary['transcript_tokens']} chain-of-thought tokens "
        f"(median {summary['median_transcript_tokens']:.0f}); reading the full transcript: "
        f"{summary['full_transcript_accuracy_pct']:.1f}% correct; oracle exit saves "
        f"{summary['oracle_tokens_saved_pct']:.1f}% of the tokens; probes found "
        f"{100 * summary['probe_cached_fraction']:.1f}% of their prompt tokens in the cache.",
        "",
        "| interval | window | stopped early | tokens saved | share of oracle | accuracy | probes per transcript |",
        "|---|---|---|---|---|---|---|",
    ]
    oracle = summary["oracle_tokens_saved_pct"] or float("nan")
    for s in summary["settings"]:
        lines.append(f"| {s['interval']} | {s['window']} | {s['exited']} | {s['tokens_saved_pct']:.1f}% | "
                     f"{s['tokens_saved_pct'] / oracle:.2f} | {s['accuracy_pct']:.1f}% | "
                     f"{s['probes_per_transcript']:.1f} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server (default: launch our server on the default model)")
    parser.add_argument("--setting", default=DEFAULT_SETTING, help="CHAMP conversation setting")
    parser.add_argument("--limit", type=int, default=270)
    parser.add_argument("--base-interval", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--probe-temperature", type=float, default=None,
                        help="override the probes' temperature (default: the server default, 0.6)")
    parser.add_argument("--json", type=Path, help="write the summary and every probe here")
    parser.add_argument("--evaluate", type=Path,
                        help="no probing: re-evaluate the probes saved in this --json file")
    args = parser.parse_args(argv)
    if args.evaluate:
        saved = json.loads(args.evaluate.read_text())
        probed = [ProbedTranscript(**t) for t in saved["probed"]]
        summary = {**saved["summary"], **evaluate(probed, args.base_interval)}
        print(markdown(summary))
        return 0

    from transformers import AutoTokenizer

    from sglang_arctic.config import ArcticConfig
    from sglang_arctic.models.default_model import materialize
    from sglang_arctic.reasoning.settings import DynasorDefaults

    settings = DynasorDefaults.from_config(ArcticConfig()).settings
    if args.probe_temperature is not None:
        from dataclasses import replace

        settings = replace(settings, probe_temperature=args.probe_temperature)
    transcripts = champ_transcripts(args.setting, args.limit)
    tokenizer = AutoTokenizer.from_pretrained(str(materialize()))
    server = None
    url = args.url
    if url is None:
        from sglang_arctic.testing.server import launch

        print("starting the server on the default model ...", flush=True)
        server = launch([], timeout=600)
        url = server.base_url
    started = time.monotonic()
    probed: list[ProbedTranscript] = []
    pool = ThreadPoolExecutor(args.concurrency)
    try:
        futures = [pool.submit(probe_transcript, url, tokenizer, t, settings, args.base_interval)
                   for t in transcripts]
        for i, future in enumerate(futures, 1):
            probed.append(future.result())
            if i % 10 == 0 or i == len(futures):
                print(f"  {i}/{len(futures)} transcripts probed ({time.monotonic() - started:.0f} s)",
                      flush=True)
    except KeyboardInterrupt:
        print(f"interrupted: evaluating the {len(probed)} transcripts probed so far", flush=True)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        if server is not None:
            server.stop()
    if not probed:
        return 1
    summary = evaluate(probed, args.base_interval)
    summary["wall_s"] = time.monotonic() - started
    summary["probe_settings"] = asdict(settings)
    summary["setting"] = args.setting
    print(markdown(summary))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "probed": [asdict(t) for t in probed]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
