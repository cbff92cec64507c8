"""Ranker training: grouping, splitting, and end to end on a synthetic trace
whose output lengths follow cues in the text (in process and through the CLI)."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sglang_arctic.scheduling.features import FEATURE_VERSION, NUM_FEATURES, RequestInfo, featurize
from sglang_arctic.scheduling.ranker import LengthRanker
from sglang_arctic.scheduling.trace import TraceRecord, TraceWriter, prompt_digest
from sglang_arctic.scheduling.train_ranker import (
    TrainError,
    TrainParams,
    evaluate,
    load_dataset,
    split_groups,
    train,
)

PYTHON_DIR = Path(__file__).resolve().parents[3] / "python"
MAX_MODEL_BYTES = 300 * 1024

# (instruction, typical output tokens): the cue decides the length.
KINDS = (
    ("Answer in one word: what is the main color of {t}?", 2),
    ("Answer yes or no: is {t} older than a century?", 3),
    ("In one sentence, what is {t}?", 25),
    ("Briefly describe {t}.", 60),
    ("List ten facts about {t}.", 180),
    ("Explain how {t} works, step by step.", 350),
    ("Write Python code that simulates {t}.", 500),
    ("Write a detailed essay about {t}.", 900),
)
TOPICS = ("the moon", "a volcano", "jazz", "the stock market", "bees", "glaciers", "chess",
          "the printing press", "radio", "coffee", "the internet", "rainforests")
FILLER = ("alpha", "river", "stone", "paper", "window", "signal", "garden", "orbit", "copper",
          "lantern", "harbor", "meadow")


def synthetic_records(n: int, seed: int = 0, aborts: int = 0) -> list[TraceRecord]:
    """Requests whose output length depends on the instruction's cue, with
    lognormal noise and a context of random length that says nothing about it."""
    rng = random.Random(seed)
    records, clock = [], 1_700_000_000.0
    for i in range(n + aborts):
        instruction, typical = rng.choice(KINDS)
        context = " ".join(rng.choice(FILLER) for _ in range(rng.randint(0, 300)))
        user = f"Context: {context}\n\n{instruction.format(t=rng.choice(TOPICS))}"
        text = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")
        prompt_tokens = 20 + len(user.split()) * 13 // 10
        output = min(2048, max(1, round(typical * rng.lognormvariate(0.0, 0.35))))
        vec = featurize(RequestInfo(text, prompt_tokens, 2048, 0.7, 0))
        clock += rng.expovariate(5.0)
        records.append(TraceRecord(
            rid=f"req-{i}", prompt_sha=prompt_digest(range(prompt_tokens)),
            feature_version=FEATURE_VERSION, features=vec.tolist(), prompt_tokens=prompt_tokens,
            output_tokens=output, finish_reason="abort" if i >= n else
            ("length" if output == 2048 else "stop"),
            max_new_tokens=2048, arrival_time=clock, first_token_time=clock + 0.05,
            finish_time=clock + 0.01 * output))
    rng.shuffle(records)  # the file order need not be the arrival order
    return records


def write_trace(path: Path, records) -> Path:
    with TraceWriter(path) as writer:
        for r in records:
            writer.write(r)
    return path


@pytest.fixture(scope="module")
def synthetic_trace(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("trace") / "synthetic.jsonl"
    return write_trace(path, synthetic_records(600, aborts=20))


def test_dataset_is_grouped_in_arrival_order_without_aborts(tmp_path):
    records = synthetic_records(9, aborts=3)
    data = load_dataset([write_trace(tmp_path / "t.jsonl", records)], group_size=4)
    kept = sorted((r for r in records if r.finish_reason != "abort"), key=lambda r: r.arrival_time)
    # 9 records -> groups of 4, 4 and a trailing 1 that cannot be ranked (dropped).
    assert data.num_groups == 2 and list(data.group_sizes()) == [4, 4]
    assert list(data.output_tokens) == [r.output_tokens for r in kept[:8]]
    assert data.features.shape == (8, NUM_FEATURES) and data.features.dtype == np.float32


def test_each_file_is_grouped_on_its_own(tmp_path):
    a = write_trace(tmp_path / "a.jsonl", synthetic_records(6, seed=1))
    b = write_trace(tmp_path / "b.jsonl", synthetic_records(6, seed=2))
    data = load_dataset([a, b], group_size=4)
    assert list(data.group_sizes()) == [4, 2, 4, 2]


def test_split_is_seeded_disjoint_and_complete():
    train_groups, held = split_groups(20, 0.2, seed=3)
    assert (train_groups, held) == split_groups(20, 0.2, seed=3)
    assert len(held) == 4 and sorted(train_groups + held) == list(range(20))
    assert split_groups(20, 0.2, seed=4) != (train_groups, held)
    assert split_groups(2, 0.01, seed=0)[1] != []  # always one held-out group


def test_too_few_groups_is_an_error():
    with pytest.raises(TrainError, match="too few records"):
        split_groups(1, 0.2, seed=0)


def test_a_record_of_another_feature_version_is_refused(tmp_path):
    records = synthetic_records(4)
    old = dataclasses.replace(records[0], feature_version=FEATURE_VERSION + 1)
    path = write_trace(tmp_path / "old.jsonl", [old] + records[1:])
    with pytest.raises(TrainError, match=f"old.jsonl.*feature version {FEATURE_VERSION + 1}"):
        load_dataset([path], group_size=2)


def test_trained_ranker_orders_held_out_requests_by_length(synthetic_trace, tmp_path):
    data = load_dataset([synthetic_trace], group_size=32)
    train_groups, held_groups = split_groups(data.num_groups, 0.2, seed=0)
    ranker = train(data.subset(train_groups), TrainParams(num_threads=1, log_every=0))
    size = ranker.save(tmp_path / "ranker.txt")
    print(f"synthetic ranker file: {size} bytes")
    assert size < MAX_MODEL_BYTES
    result = evaluate(LengthRanker.load(tmp_path / "ranker.txt"), data.subset(held_groups))
    print(result.table())
    model, prompt, rand = (result.by_name(n) for n in ("ranker", "prompt_length", "random"))
    assert model.tau > 0.5 and model.group_tau > 0.5
    assert model.tau > prompt.tau + 0.2 and model.tau > rand.tau + 0.2
    assert model.group_tau > prompt.group_tau + 0.2 and model.group_tau > rand.group_tau + 0.2


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(PYTHON_DIR), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "sglang_arctic.scheduling.train_ranker", *args],
                          env=env, capture_output=True, text=True, timeout=120)


def test_cli_trains_writes_the_model_and_prints_the_tau_table(synthetic_trace, tmp_path):
    out, metrics_path = tmp_path / "ranker.txt", tmp_path / "m" / "metrics.json"
    proc = _cli("--trace", str(synthetic_trace), "--out", str(out), "--num-threads", "1",
                "--metrics-json", str(metrics_path))
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and out.stat().st_size < MAX_MODEL_BYTES
    LengthRanker.load(out)
    for words in ("Kendall's tau", "ranker", "prompt_length", "random", "[10]", str(out)):
        assert words in proc.stdout
    metrics = json.loads(metrics_path.read_text())
    assert metrics["model_bytes"] == out.stat().st_size
    assert metrics["tau"]["ranker"]["all"] > 0.5
    assert set(metrics["tau"]) == {"ranker", "prompt_length", "random"}


def test_cli_with_too_few_records_fails_clearly(tmp_path):
    trace = write_trace(tmp_path / "tiny.jsonl", synthetic_records(5))
    proc = _cli("--trace", str(trace), "--out", str(tmp_path / "r.txt"))
    assert proc.returncode != 0
    assert "too few records" in proc.stderr
    assert not (tmp_path / "r.txt").exists()
