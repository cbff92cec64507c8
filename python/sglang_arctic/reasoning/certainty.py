"""Certainty of a reasoning trace from its probed answers.

``is_certain`` is the Dynasor-CoT stop rule (consistent recent probes, no
hesitation); ``certaindex`` is the entropy-based Certaindex over sampled
answers; ``ProbeHistory`` keeps one request's probes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sglang_arctic.reasoning.answers import answers_equivalent, cluster_answers, has_hesitation

__all__ = ["ProbeHistory", "ProbeRecord", "certaindex", "is_certain"]


def is_certain(answers: list[str], probe_texts: list[str], window: int) -> bool:
    """True iff the last ``window`` probes (oldest first) all gave non-empty,
    pairwise equivalent answers and none of their texts hesitates."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if len(answers) != len(probe_texts):
        raise ValueError(
            f"answers and probe_texts differ in length ({len(answers)} != {len(probe_texts)})"
        )
    if len(answers) < window:
        return False
    recent = answers[-window:]
    # Every pair, not just neighbours: equivalence with tolerances is not
    # transitive. Any disagreement means "not certain" (the lab code got this
    # backwards and stopped on disagreeing probes).
    for i, first in enumerate(recent):
        for second in recent[i:]:
            # i == i also rejects an empty answer, which is never equivalent.
            if not answers_equivalent(first, second):
                return False
    return not any(has_hesitation(text) for text in probe_texts[-window:])


def certaindex(answers: list[str]) -> float:
    """Normalized answer-entropy certainty in [0, 1]: 1 when all n answers
    agree, 0 when all differ; empty answers count as singletons."""
    n = len(answers)
    if n == 0:
        raise ValueError("certaindex needs at least one answer")
    if n == 1:
        return 1.0 if answers_equivalent(answers[0], answers[0]) else 0.0
    entropy = 0.0
    for cluster in cluster_answers(answers):
        p = len(cluster) / n
        entropy -= p * math.log(p)
    value = (math.log(n) - entropy) / math.log(n)
    # Rounding can step just outside [0, 1] at the extremes.
    return min(1.0, max(0.0, value))


@dataclass
class ProbeRecord:
    """One probe: where in the output it ran, what it generated, the answer
    read from it, and the tokens it cost."""

    position: int
    text: str
    answer: str
    tokens: int


@dataclass
class ProbeHistory:
    """A request's probes, oldest first."""

    records: list[ProbeRecord] = field(default_factory=list)

    def add(self, record: ProbeRecord) -> None:
        """Append a probe."""
        self.records.append(record)

    def answers(self) -> list[str]:
        """The probed answers, oldest first."""
        return [r.answer for r in self.records]

    def certain(self, window: int) -> bool:
        """The stop rule (``is_certain``) over this history."""
        return is_certain(self.answers(), [r.text for r in self.records], window)

    def probe_tokens(self) -> int:
        """Tokens spent on probes so far."""
        return sum(r.tokens for r in self.records)
