"""How many positions each request verifies in one step.

A verify step is a rectangle: every request in the batch verifies the same
number of positions (its last committed token plus drafts, padded). On a GPU
the width is nearly free; on a CPU every position costs compute, padding
included, so a fixed width is either too narrow where drafts are long
(templates, code copies) or wasteful where they are short (chat).

``VerifyWidthPolicy`` picks the width per step to maximise the expected
tokens committed per second:

    rate(w) = (bs + scale * sum_i sum_{k < w-1} p_i[k]) / (fixed + per_token * bs * w)

* ``p_i[k]`` is the suffix tree's estimate that request ``i``'s draft is
  right up to token ``k``; their sum over the verified tokens is the
  expected number of accepted draft tokens (also for a tree draft, counted
  node by node).
* ``scale`` calibrates those estimates against what verification really
  accepted recently (``AcceptanceCalibration``).
* ``fixed`` and ``per_token`` come from an online least-squares fit of the
  measured seconds per step against the tokens verified (``StepCostModel``):
  nothing is assumed about the hardware; on a GPU ``per_token`` comes out
  near zero and the policy verifies every draft token.

Until the fit has seen enough distinct step sizes the width is simply the
longest draft plus one; every ``explore_every`` steps it is that again, so
the fit and the calibration keep seeing wide steps even when narrow ones
win. Width 1 (no draft) is a plain decode step run through verify.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence


@dataclass
class StepCostModel:
    """seconds ~= fixed + per_token * tokens, fitted by exponentially weighted
    least squares (old steps fade with ``decay`` per observation)."""

    decay: float = 0.98
    min_steps: int = 8
    _w: float = 0.0  # sums of weights, x, x^2, y, x*y
    _x: float = 0.0
    _xx: float = 0.0
    _y: float = 0.0
    _xy: float = 0.0
    _steps: int = 0

    def observe(self, tokens: int, seconds: float) -> None:
        d = self.decay
        self._w = d * self._w + 1.0
        self._x = d * self._x + tokens
        self._xx = d * self._xx + tokens * tokens
        self._y = d * self._y + seconds
        self._xy = d * self._xy + tokens * seconds
        self._steps += 1

    def fit(self) -> tuple[float, float] | None:
        """``(fixed, per_token)``, or None while the data cannot tell them apart."""
        if self._steps < self.min_steps:
            return None
        mean_x = self._x / self._w
        var_x = self._xx / self._w - mean_x * mean_x
        if var_x < 0.25:  # all recent steps of (nearly) one size
            return None
        mean_y = self._y / self._w
        per_token = max((self._xy / self._w - mean_x * mean_y) / var_x, 0.0)
        fixed = max(mean_y - per_token * mean_x, 1e-6)
        return fixed, per_token


@dataclass
class AcceptanceCalibration:
    """Accepted draft tokens / tree-estimated ones, over recent steps."""

    decay: float = 0.98
    _accepted: float = 0.0
    _predicted: float = 0.0

    def observe(self, predicted: float, accepted: int) -> None:
        self._accepted = self.decay * self._accepted + accepted
        self._predicted = self.decay * self._predicted + predicted

    @property
    def scale(self) -> float:
        if self._predicted < 1.0:  # too little evidence: trust the tree
            return 1.0
        return min(self._accepted / self._predicted, 2.0)


@dataclass
class StepWindow:
    """Totals over the verify steps since the last summary."""

    steps: int = 0
    requests: int = 0
    width: int = 0
    accepted: int = 0
    timed_steps: int = 0
    seconds: float = 0.0

    def add(self, bs: int, width: int, accepted: int, seconds: float | None) -> None:
        self.steps += 1
        self.requests += bs
        self.width += width
        self.accepted += accepted
        if seconds is not None:
            self.timed_steps += 1
            self.seconds += seconds

    def describe(self) -> str:
        if not self.steps:
            return "no verify steps"
        step_ms = f"{self.seconds / self.timed_steps * 1e3:.1f} ms" if self.timed_steps else "n/a"
        return (f"{self.steps} verify steps, mean batch {self.requests / self.steps:.1f}, "
                f"mean width {self.width / self.steps:.2f}, "
                f"{1 + self.accepted / self.requests:.2f} tokens per request-step, "
                f"{step_ms} per step")


@dataclass
class VerifyWidthPolicy:
    """Chooses each step's verify width (1 .. ``max_width``); see the module doc."""

    max_width: int
    adaptive: bool = True
    explore_every: int = 16
    cost: StepCostModel = field(default_factory=StepCostModel)
    calibration: AcceptanceCalibration = field(default_factory=AcceptanceCalibration)
    window: StepWindow = field(default_factory=StepWindow)
    _step: int = 0

    def choose(self, draft_probs: Sequence[Sequence[float]]) -> int:
        """Width for a batch whose requests drafted with these token probabilities."""
        self._step += 1
        longest = min(max((len(p) for p in draft_probs), default=0), self.max_width - 1)
        if not self.adaptive or longest == 0 or self._step % self.explore_every == 0:
            return longest + 1
        fit = self.cost.fit()
        if fit is None:
            return longest + 1
        fixed, per_token = fit
        bs = len(draft_probs)
        # expected accepted tokens gained by verifying draft position k
        gain = [sum(p[k] for p in draft_probs if k < len(p)) for k in range(longest)]
        scale = self.calibration.scale
        best_width, best_rate, expected = 1, 0.0, float(bs)
        for width in range(1, longest + 2):
            if width > 1:
                expected += scale * gain[width - 2]
            rate = expected / (fixed + per_token * bs * width)
            if rate > best_rate:
                best_width, best_rate = width, rate
        return best_width

    @staticmethod
    def predicted_accepted(draft_probs: Sequence[Sequence[float]], width: int) -> float:
        return sum(sum(p[: width - 1]) for p in draft_probs)

    def observe(self, draft_probs: Sequence[Sequence[float]], width: int,
                accepted: int, seconds: float | None) -> None:
        """One finished verify step: drafts accepted in total, and its duration
        (None when it could not be measured cleanly)."""
        self.calibration.observe(self.predicted_accepted(draft_probs, width), accepted)
        if seconds is not None:
            self.cost.observe(len(draft_probs) * width, seconds)
        self.window.add(len(draft_probs), width, accepted, seconds)

    def summary(self) -> str:
        """One line for the server log: the steps since the last summary
        (which it resets) and the current cost fit and calibration."""
        fit = self.cost.fit()
        cost = "not fitted yet" if fit is None else \
            f"{fit[0] * 1e3:.1f} ms + {fit[1] * 1e3:.2f} ms per verified token"
        line = (f"{self.window.describe()}; step cost {cost}; "
                f"acceptance scale {self.calibration.scale:.2f}")
        self.window = StepWindow()
        return line

