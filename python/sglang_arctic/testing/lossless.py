"""The two lossless checks every speculative path in this project must pass.

1. Every token a speculative run emits is the target's greedy choice by the
   target's own logits in that run: its logprob equals the top-1 logprob (a
   different token id is accepted only at an exact near-tie).
2. Speculative outputs equal non-speculative greedy outputs token for token
   under matched numerics (fp32, the same cache state in both runs); where a
   sequence diverges, the reference's top-2 logprobs there are a near-tie.

The functions return human-readable violations; the tests assert none.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import requests

# The non-speculative side of check 2, and the base of every speculative
# server compared with it: fp32 on every CPU, and the radix cache off so that
# every prompt is prefilled from a cold cache in both runs.
GREEDY_REFERENCE_FLAGS = ["--dtype", "float32", "--disable-radix-cache"]

# fp32 logits: an exact tie computed twice can differ by rounding only.
TIE_TOLERANCE = 1e-4


def generate_greedy(base_url: str, texts: Sequence[str], max_new_tokens: int,
                    concurrency: int = 1, timeout: float = 900) -> list[dict]:
    """``/generate`` each text greedily with logprobs and the top-2 alternatives."""

    def one(text: str) -> dict:
        r = requests.post(
            base_url + "/generate",
            json={
                "text": text,
                "sampling_params": {"temperature": 0, "max_new_tokens": max_new_tokens},
                "return_logprob": True,
                "top_logprobs_num": 2,
            },
            timeout=timeout,
        )
        if r.status_code != 200:
            raise AssertionError(f"/generate answered {r.status_code}: {r.text[:500]}")
        return r.json()

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(one, texts))


def output_ids(result: dict) -> list[int]:
    return [entry[1] for entry in result["meta_info"]["output_token_logprobs"]]


def greedy_choice_violations(results: Sequence[dict], tol: float = TIE_TOLERANCE) -> tuple[list[str], int]:
    """Check 1. Returns (violations, number of tokens checked)."""
    violations, checked = [], 0
    for i, result in enumerate(results):
        meta = result["meta_info"]
        emitted, top = meta["output_token_logprobs"], meta["output_top_logprobs"]
        if not len(emitted) == len(top) == meta["completion_tokens"]:
            violations.append(f"prompt {i}: {len(emitted)} logprobs, {len(top)} top-k lists, "
                              f"{meta['completion_tokens']} tokens")
            continue
        for pos, ((logprob, token_id, _), candidates) in enumerate(zip(emitted, top)):
            best_logprob, best_id, _ = candidates[0]
            if token_id != best_id and abs(logprob - best_logprob) > tol:
                violations.append(
                    f"prompt {i} position {pos}: emitted token {token_id} (logprob {logprob:.6g}) "
                    f"but the target's greedy choice was {best_id} (logprob {best_logprob:.6g})"
                )
            checked += 1
    return violations, checked


def divergences_not_at_ties(spec: Sequence[dict], ref: Sequence[dict],
                            tol: float = TIE_TOLERANCE) -> tuple[list[str], int]:
    """Check 2. Returns (violations, number of identical outputs)."""
    violations, identical = [], 0
    for i, (s, r) in enumerate(zip(spec, ref, strict=True)):
        s_ids, r_ids = output_ids(s), output_ids(r)
        if s_ids == r_ids:
            identical += 1
            continue
        common = min(len(s_ids), len(r_ids))
        pos = next((k for k in range(common) if s_ids[k] != r_ids[k]), common)
        if pos == common:
            violations.append(f"prompt {i}: one output is a prefix of the other "
                              f"({len(s_ids)} vs {len(r_ids)} tokens)")
            continue
        top = r["meta_info"]["output_top_logprobs"][pos]
        gap = top[0][0] - top[1][0]
        if gap > tol or s_ids[pos] not in (top[0][1], top[1][1]):
            violations.append(
                f"prompt {i}: speculative output diverges from greedy at token {pos} "
                f"({s_ids[pos]} vs {r_ids[pos]}) where the reference's top-2 gap is "
                f"{gap:.3g}, not a near-tie"
            )
    return violations, identical
