"""SGLang's own NGRAM speculation runs on CPU through our kernels and attention
backend, and is lossless by both checks of the foundation issue:

1. every token the speculative run emits is the target's greedy choice by the
   target's own logits in that run (its logprob equals the top-1 logprob; a
   different token id is accepted only at an exact near-tie);
2. the speculative outputs equal non-speculative greedy outputs token for token
   under matched numerics (fp32, radix cache off in both servers so both runs
   prefill from a cold cache, all prompts batched together). Where a sequence diverges,
   the reference run's top-2 logprobs at the divergence must be a near-tie.

The prompts make the model copy text it was given, so n-gram drafts are really
accepted (asserted: fewer verify steps than tokens), and the tree verify path
(`--speculative-ngram-max-bfs-breadth` > 1, a custom mask) is exercised.
"""

from __future__ import annotations

import pytest
import requests

from sglang_arctic.testing.lossless import (
    GREEDY_REFERENCE_FLAGS,
    divergences_not_at_ties,
    generate_greedy,
    greedy_choice_violations,
)
from sglang_arctic.testing.server import start

MAX_NEW_TOKENS = 64

SPEC_FLAGS = [
    "--speculative-algorithm", "NGRAM",
    "--speculative-num-draft-tokens", "8",
    "--speculative-ngram-max-bfs-breadth", "4",
]

PASSAGE = (
    "The quick brown fox jumps over the lazy dog. The lazy dog sleeps in the sun "
    "while the quick brown fox runs into the forest to find its friends."
)
CODE = '''def merge_sorted(left, right):
    result = []
    i = j = 0
    while i < len(left) and j < len(right):
        if left[i] <= right[j]:
            result.append(left[i])
            i += 1
        else:
            result.append(right[j])
            j += 1
    result.extend(left[i:])
    result.extend(right[j:])
    return result
'''


def _chat(user: str) -> str:
    return (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )


PROMPTS = [
    _chat(f"Repeat the following text exactly, twice:\n\n{PASSAGE}"),
    _chat(f"Copy this Python function exactly and add a docstring:\n\n```python\n{CODE}```"),
    _chat("Count from 1 to 40, separated by commas."),
    _chat("Write the word 'hello' twenty times, separated by spaces."),
    _chat(f"Rename the function below to merge_lists and show the whole code:\n\n{CODE}"),
    "The days of the week are Monday, Tuesday, Wednesday, Thursday, Friday, "
    "Saturday, Sunday. The days of the week are Monday, Tuesday,",
]


@pytest.fixture(scope="module")
def runs(greedy_reference_server):
    """Speculative outputs, then the shared reference server's (one server
    generates at a time: two busy CPU servers slow each other down badly)."""
    out = {}
    server = start(GREEDY_REFERENCE_FLAGS + SPEC_FLAGS)
    try:
        server.wait_ready(300)
        out["spec"] = generate_greedy(server.base_url, PROMPTS, MAX_NEW_TOKENS, len(PROMPTS))
        out["spec_info"] = requests.get(server.base_url + "/get_server_info", timeout=30).json()
    finally:
        server.stop()
    reference = greedy_reference_server.wait_ready(300)
    out["ref"] = generate_greedy(reference.base_url, PROMPTS, MAX_NEW_TOKENS, len(PROMPTS))
    out["ref_info"] = requests.get(reference.base_url + "/get_server_info", timeout=30).json()
    return out


def test_speculation_runs_through_our_backend_and_kernels(runs):
    from sglang_arctic.attention import BACKEND_NAME

    for name in ("spec", "ref"):
        info = runs[name + "_info"]
        assert info["device"] == "cpu" and info["attention_backend"] == BACKEND_NAME, info
    assert runs["spec_info"]["speculative_algorithm"] == "NGRAM"
    assert runs["ref_info"]["speculative_algorithm"] in (None, "NONE", "")


def test_speculation_really_accepts_drafts(runs):
    total_tokens = total_steps = 0
    for result in runs["spec"]:
        meta = result["meta_info"]
        assert meta.get("spec_verify_ct", 0) > 0, meta
        total_tokens += meta["completion_tokens"]
        total_steps += meta["spec_verify_ct"]
    # Copy-heavy prompts: n-gram drafts must be accepted often enough that the
    # verify steps are clearly fewer than the emitted tokens.
    assert total_tokens / total_steps >= 1.5, (total_tokens, total_steps)


def test_every_emitted_token_is_the_greedy_choice(runs):
    violations, checked = greedy_choice_violations(runs["spec"])
    assert violations == []
    assert checked >= len(PROMPTS) * 10


def test_outputs_equal_non_speculative_greedy(runs):
    violations, identical = divergences_not_at_ties(runs["spec"], runs["ref"])
    assert violations == []
    assert identical >= len(PROMPTS) // 2  # near-ties are rare; most runs match exactly
