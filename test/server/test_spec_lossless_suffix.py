"""ARCTIC_SUFFIX (SuffixDecoding inside SGLang) is lossless on 50 real prompts
across the three workloads of issue 5, by both checks of the foundation issue
(see sglang_arctic/testing/lossless.py), and its drafts are really accepted.

Workloads (benchmark/datasets.py): code editing over HumanEval solutions,
chat (ShareGPT first turns), and one JSON-extraction template over SQuAD
contexts. Both servers run fp32 with the radix cache off; 25 requests are in
flight at a time (CPU decode steps cost nearly the same for 8 requests as for 25).
"""

from __future__ import annotations

from collections import defaultdict

import pytest
import requests

from benchmark import datasets as D
from sglang_arctic.models.default_model import materialize
from sglang_arctic.spec.suffix_algorithm import ALGORITHM_NAME
from sglang_arctic.testing.lossless import (
    GREEDY_REFERENCE_FLAGS,
    divergences_not_at_ties,
    generate_greedy,
    greedy_choice_violations,
)
from sglang_arctic.testing.server import start

MAX_NEW_TOKENS = 64
CONCURRENCY = 25
WORKLOADS = {"code_edit": 17, "template": 17, "sharegpt": 16}
SPEC_FLAGS = ["--arctic-suffix-decoding", "--speculative-num-draft-tokens", "9"]


@pytest.fixture(scope="module")
def prompts():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(materialize()))
    options = D.SampleOptions(max_prompt_tokens=600, max_output_tokens=MAX_NEW_TOKENS)
    return [p for name, n in WORKLOADS.items() for p in D.load(name, tokenizer, n, options)]


@pytest.fixture(scope="module")
def runs(prompts, greedy_reference_server):
    texts = [p.text for p in prompts]
    out = {}
    server = start(GREEDY_REFERENCE_FLAGS + SPEC_FLAGS)
    try:
        server.wait_ready(300)
        out["spec"] = generate_greedy(server.base_url, texts, MAX_NEW_TOKENS, CONCURRENCY)
        out["spec_info"] = requests.get(server.base_url + "/get_server_info", timeout=30).json()
    finally:
        server.stop()
    reference = greedy_reference_server.wait_ready(300)
    out["ref"] = generate_greedy(reference.base_url, texts, MAX_NEW_TOKENS, CONCURRENCY)
    out["ref_info"] = requests.get(reference.base_url + "/get_server_info", timeout=30).json()
    return out


def test_fifty_real_prompts_over_three_workloads(prompts):
    assert len(prompts) == 50
    assert {p.id.split(":")[0] for p in prompts} == set(WORKLOADS)


def test_speculation_is_arctic_suffix_on_our_backend(runs):
    info = runs["spec_info"]
    assert info["speculative_algorithm"] == ALGORITHM_NAME
    assert info["attention_backend"] == "arctic" and info["device"] == "cpu"


def test_drafts_are_accepted_where_output_copies_input(runs, prompts):
    tokens, steps = defaultdict(int), defaultdict(int)
    for prompt, result in zip(prompts, runs["spec"]):
        meta = result["meta_info"]
        workload = prompt.id.split(":")[0]
        tokens[workload] += meta["completion_tokens"]
        steps[workload] += meta["spec_verify_ct"]
    accept_length = {w: tokens[w] / steps[w] for w in tokens}
    # Code editing copies the given function: many tokens per verify step.
    assert accept_length["code_edit"] >= 1.5, accept_length
    assert all(a >= 1.0 for a in accept_length.values()), accept_length


def test_every_emitted_token_is_the_greedy_choice(runs):
    violations, checked = greedy_choice_violations(runs["spec"])
    assert violations == []
    assert checked >= 50 * 10


def test_outputs_equal_non_speculative_greedy(runs):
    violations, identical = divergences_not_at_ties(runs["spec"], runs["ref"])
    assert violations == []
    assert identical >= 25, identical
