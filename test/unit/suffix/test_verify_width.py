"""Per-step verify width: cost fit, acceptance calibration, width choice, draft truncation."""

from __future__ import annotations

import numpy as np
import pytest

from sglang_arctic.spec.suffix_algorithm import ProposedDraft, pack_draft
from sglang_arctic.spec.verify_width import (
    AcceptanceCalibration,
    StepCostModel,
    VerifyWidthPolicy,
)


def _fitted_policy(fixed: float, per_token: float, max_width: int = 17) -> VerifyWidthPolicy:
    policy = VerifyWidthPolicy(max_width=max_width, explore_every=10**9)
    for tokens in [1, 4, 8, 17, 2, 12, 6, 16, 3, 9]:
        policy.cost.observe(tokens, fixed + per_token * tokens)
    return policy


def test_cost_model_recovers_a_linear_cost():
    model = StepCostModel()
    for tokens in [1, 5, 9, 13, 17, 3, 7, 11, 15, 2]:
        model.observe(tokens, 0.02 + 0.003 * tokens)
    fixed, per_token = model.fit()
    assert fixed == pytest.approx(0.02, rel=1e-6)
    assert per_token == pytest.approx(0.003, rel=1e-6)


def test_cost_model_declines_to_fit_without_evidence():
    model = StepCostModel(min_steps=8)
    for _ in range(7):
        model.observe(5, 0.01)
    assert model.fit() is None  # too few steps
    for _ in range(20):
        model.observe(5, 0.01)
    assert model.fit() is None  # one step size only: slope unknown


def test_cost_model_never_returns_negative_cost():
    model = StepCostModel()
    for tokens in range(1, 12):
        model.observe(tokens, 0.05 - 0.001 * tokens)  # noise that looks like a negative slope
    fixed, per_token = model.fit()
    assert per_token == 0.0 and fixed > 0


def test_cost_model_forgets_old_hardware_behaviour():
    model = StepCostModel(decay=0.9)
    for tokens in [1, 9, 17] * 10:
        model.observe(tokens, 0.01 + 0.01 * tokens)
    for tokens in [1, 9, 17] * 40:
        model.observe(tokens, 0.01 + 0.001 * tokens)
    _, per_token = model.fit()
    assert per_token == pytest.approx(0.001, rel=0.05)


def test_calibration_tracks_accepted_over_predicted():
    cal = AcceptanceCalibration()
    assert cal.scale == 1.0
    cal.observe(predicted=0.5, accepted=3)
    assert cal.scale == 1.0  # under one predicted token: not enough evidence
    for _ in range(50):
        cal.observe(predicted=4.0, accepted=2)
    assert cal.scale == pytest.approx(0.5, rel=0.05)
    for _ in range(500):
        cal.observe(predicted=1.0, accepted=10)
    assert cal.scale == 2.0  # capped


def test_policy_verifies_the_longest_draft_until_the_cost_is_known():
    policy = VerifyWidthPolicy(max_width=17)
    assert policy.choose([[0.9] * 4, [0.5] * 10]) == 11
    assert policy.choose([[0.9] * 30]) == 17  # capped at max_width
    assert policy.choose([[], []]) == 1  # nothing drafted: plain decode width


def test_policy_goes_wide_when_tokens_are_nearly_free():
    policy = _fitted_policy(fixed=0.05, per_token=1e-6)
    assert policy.choose([[0.3] * 16]) == 17


def test_policy_goes_narrow_when_tokens_are_expensive_and_drafts_weak():
    policy = _fitted_policy(fixed=0.01, per_token=0.01)
    # Probabilities fall fast: only the first draft token is worth its cost.
    draft = [0.9, 0.05, 0.02, 0.01, 0.01, 0.01]
    assert policy.choose([draft]) == 2
    # A hopeless draft is not verified at all.
    assert policy.choose([[0.01] * 6]) == 1


def test_policy_follows_confident_drafts_even_when_tokens_cost():
    policy = _fitted_policy(fixed=0.01, per_token=0.01)
    assert policy.choose([[1.0] * 8]) == 9


def test_policy_uses_calibration_to_discount_optimistic_trees():
    confident = [[0.8] * 8]
    trusting = _fitted_policy(fixed=0.01, per_token=0.005)
    sceptical = _fitted_policy(fixed=0.01, per_token=0.005)
    for _ in range(100):
        sceptical.calibration.observe(predicted=5.0, accepted=0)
    assert trusting.choose(confident) > 1
    assert sceptical.choose(confident) == 1


def test_policy_explores_the_full_width_periodically():
    policy = _fitted_policy(fixed=0.01, per_token=0.01)
    policy.explore_every = 4
    weak = [[0.01] * 6]
    widths = [policy.choose(weak) for _ in range(8)]
    assert widths.count(7) == 2 and widths.count(1) == 6


def test_policy_not_adaptive_always_verifies_the_longest_draft():
    policy = _fitted_policy(fixed=0.01, per_token=0.01)
    policy.adaptive = False
    assert policy.choose([[0.01] * 6]) == 7


def test_policy_observe_feeds_cost_and_calibration():
    policy = VerifyWidthPolicy(max_width=9)
    probs = [[0.5, 0.5, 0.5], [0.25]]
    assert VerifyWidthPolicy.predicted_accepted(probs, 3) == pytest.approx(1.25)
    policy.observe(probs, 3, accepted=2, seconds=None)
    assert policy.cost._steps == 0  # unmeasured step: no cost sample
    assert policy.calibration._accepted == 2
    policy.observe(probs, 3, accepted=1, seconds=0.02)
    assert policy.cost._steps == 1 and policy.cost._x == pytest.approx(6)


@pytest.mark.parametrize("width", [1, 2, 4, 9])
def test_proposed_draft_truncates_to_the_step_width(width):
    # A tree: 0 and 1 children of the root, 2 child of 0, 3 child of 2, 4 child of 1.
    d = ProposedDraft(7, [10, 11, 12, 13, 14], [-1, -1, 0, 2, 1], [0.6, 0.4, 0.5, 0.4, 0.3])
    tokens, mask = d.pack(width)
    k = min(5, width - 1)
    want_tokens, want_mask = pack_draft(7, d.token_ids[:k], d.parents[:k], width)
    np.testing.assert_array_equal(tokens, want_tokens)
    np.testing.assert_array_equal(mask, want_mask)
    assert tokens.shape[0] == width
    assert tokens[0] == 7
    # every kept node's ancestors are kept: the mask row of node i sees its parent's row
    m = mask.reshape(width, width)
    for i in range(k):
        p = d.parents[i]
        parent_row = 0 if p < 0 else p + 1
        assert m[i + 1, parent_row]


def test_policy_summary_reports_the_window_and_resets_it():
    policy = _fitted_policy(fixed=0.05, per_token=0.001)
    assert policy.summary().startswith("no verify steps")
    policy.observe([[0.9, 0.5], [0.9]], 3, accepted=3, seconds=0.06)
    policy.observe([[0.9]], 2, accepted=0, seconds=None)
    line = policy.summary()
    # 2 steps of 2 and 1 requests; widths 3 and 2; 3 accepted over 3 request-steps;
    # only the first step was timed
    assert "2 verify steps, mean batch 1.5, mean width 2.50" in line
    assert "2.00 tokens per request-step, 60.0 ms per step" in line
    assert "ms per verified token" in line and "acceptance scale" in line
    assert policy.summary().startswith("no verify steps")
