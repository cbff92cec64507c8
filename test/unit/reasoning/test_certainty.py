"""Dynasor certainty: the probe stop rule, Certaindex, and the probe history."""

from __future__ import annotations

import math

import pytest

from sglang_arctic.reasoning.certainty import ProbeHistory, ProbeRecord, certaindex, is_certain

CALM = "The answer is settled."


def calm(n):
    return [CALM] * n


# --- is_certain ----------------------------------------------------------------


def test_is_certain_false_on_disagreement_regression_for_lab_bug():
    # The reference lab code returned True here; disagreeing probes must never stop.
    assert not is_certain(["5", "6", "5"], calm(3), window=3)
    assert not is_certain(["5", "5", "6"], calm(3), window=3)
    assert not is_certain(["1", "2"], calm(2), window=2)


def test_is_certain_true_on_equivalent_forms_of_one_number():
    assert is_certain(["0.5", r"\frac{1}{2}", "1/2"], calm(3), window=3)


def test_is_certain_false_with_fewer_than_window_probes():
    assert not is_certain([], [], window=3)
    assert not is_certain(["5", "5"], calm(2), window=3)


def test_is_certain_false_with_hesitation_in_window():
    assert not is_certain(["5", "5", "5"], [CALM, "Wait, let me check", CALM], window=3)
    assert not is_certain(["5", "5", "5"], [CALM, CALM, "hmm"], window=3)


def test_is_certain_only_looks_at_the_last_window():
    answers = ["9", "", "5", "5", "5"]
    texts = ["but no", CALM, CALM, CALM, CALM]
    assert is_certain(answers, texts, window=3)
    assert not is_certain(answers, texts, window=4)


def test_is_certain_false_with_empty_answers():
    assert not is_certain(["", "", ""], calm(3), window=3)
    assert not is_certain(["5", "", "5"], calm(3), window=3)
    assert not is_certain([""], calm(1), window=1)


def test_is_certain_window_one():
    assert is_certain(["7"], calm(1), window=1)


def test_is_certain_checks_every_pair_not_just_neighbours():
    # 1.0 ~ 1.00008 ~ 1.00016 pairwise at rel_tol 1e-4 only for neighbours.
    assert not is_certain(["1.0", "1.00008", "1.00016"], calm(3), window=3)


@pytest.mark.parametrize("window", [0, -1])
def test_is_certain_rejects_bad_window(window):
    with pytest.raises(ValueError):
        is_certain(["5"], calm(1), window=window)


def test_is_certain_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        is_certain(["5", "5"], calm(1), window=1)


# --- certaindex ----------------------------------------------------------------


def test_certaindex_all_agree_is_one():
    assert certaindex(["5", "5.0", "10/2", r"\frac{10}{2}"]) == pytest.approx(1.0)


def test_certaindex_all_different_is_zero():
    assert certaindex(["1", "2", "3", "4"]) == pytest.approx(0.0)


def test_certaindex_even_split_of_four_is_half():
    assert certaindex(["1", "2", "1.0", "2.0"]) == pytest.approx(0.5)


def test_certaindex_matches_formula():
    n = 5
    h = -(3 / n) * math.log(3 / n) - 2 * (1 / n) * math.log(1 / n)
    expected = (math.log(n) - h) / math.log(n)
    assert certaindex(["a", "a", "a", "b", "c"]) == pytest.approx(expected)


def test_certaindex_monotonic_as_agreement_grows():
    n = 6
    values = [certaindex(["7"] * k + [str(i) for i in range(n - k)]) for k in range(1, n + 1)]
    assert values[0] == pytest.approx(0.0)
    assert values[-1] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(values, values[1:]))


def test_certaindex_empty_answers_lower_certainty():
    assert certaindex(["", ""]) == pytest.approx(0.0)
    assert certaindex(["5", "5", "5", ""]) < certaindex(["5", "5", "5", "5"])


def test_certaindex_single_answer():
    assert certaindex(["5"]) == 1.0
    assert certaindex([""]) == 0.0


def test_certaindex_rejects_no_answers():
    with pytest.raises(ValueError):
        certaindex([])


# --- ProbeHistory -----------------------------------------------------------------


def test_probe_history_accumulates_and_decides():
    history = ProbeHistory()
    assert history.answers() == []
    assert history.probe_tokens() == 0
    assert not history.certain(2)

    history.add(ProbeRecord(position=32, text="4}", answer="4", tokens=3))
    history.add(ProbeRecord(position=64, text="Wait, 5}", answer="5", tokens=6))
    assert history.answers() == ["4", "5"]
    assert not history.certain(2)

    history.add(ProbeRecord(position=96, text="5.0}", answer="5.0", tokens=4))
    assert not history.certain(2)  # the hesitating probe is still in the window
    history.add(ProbeRecord(position=128, text="5}", answer="5", tokens=3))
    assert history.certain(2)
    assert not history.certain(3)
    assert history.probe_tokens() == 16


def test_probe_histories_do_not_share_records():
    a, b = ProbeHistory(), ProbeHistory()
    a.add(ProbeRecord(position=0, text="", answer="", tokens=1))
    assert b.records == []
