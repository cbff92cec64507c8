"""Dynasor answers: probe extraction, hesitation, normalization, numbers,
equivalence, clustering."""

from __future__ import annotations

import pytest

from sglang_arctic.reasoning.answers import (
    HESITATION_WORDS,
    answers_equivalent,
    cluster_answers,
    extract_probe_answer,
    has_hesitation,
    majority_answer,
    normalize_answer,
    parse_number,
)

# --- extract_probe_answer ---------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("42}", "42"),
        ("  42  } and then more", "42"),
        (r"\frac{1}{2}} rest", r"\frac{1}{2}"),
        (r"\sqrt{\frac{a}{b}}}\]", r"\sqrt{\frac{a}{b}}"),
        ("}", ""),
        ("x} y}", "x"),
    ],
)
def test_extract_stops_at_first_unmatched_brace(text, expected):
    assert extract_probe_answer(text) == expected


@pytest.mark.parametrize("text", ["", "42", r"\frac{1}{2", r"\frac{1}{2}", "{{}}"])
def test_extract_unfinished_box_is_empty(text):
    assert extract_probe_answer(text) == ""


# --- has_hesitation ----------------------------------------------------------


def test_hesitation_words_are_the_papers():
    assert HESITATION_WORDS == ("wait", "hold", "but", "okay", "no", "hmm")


@pytest.mark.parametrize(
    "text",
    ["Wait, that is wrong", "HMM", "hold on", "ok... okay", "No.", "42 but maybe 43", "x(no)"],
)
def test_hesitation_whole_word_any_case(text):
    assert has_hesitation(text)


@pytest.mark.parametrize(
    "text",
    ["nothing to add", "press the button", "threshold", "awaiting", "hmmm", "know", "", "42}"],
)
def test_hesitation_ignores_words_containing_them(text):
    assert not has_hesitation(text)


# --- normalize_answer ----------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("  42 ", "42"),
        ("$42$", "42"),
        ("$$42$$", "42"),
        (r"\(42\)", "42"),
        (r"\[ 42 \]", "42"),
        (r"\text{Yes}", "yes"),
        (r"\mathrm{B}", "b"),
        (r"5\text{ cm}", "5cm"),
        (r"\text{a {b} c}", "a{b}c"),
        (r"\left( 1, 2 \right)", "(1,2)"),
        (r"3\!\,\ 4", "34"),
        ("42.", "42"),
        ("$42$.", "42"),
        ("1,000", "1000"),
        ("1,234,567.5", "1234567.5"),
        (r"\dfrac{3}{4}", r"\frac{3}{4}"),
        (r"\tfrac{3}{4}", r"\frac{3}{4}"),
        (r"90^\circ", "90"),
        (r"90^{\circ}", "90"),
        (r"50\%", "50%"),
        ("X = 5", "x=5"),
        ("", ""),
        ("$ $", ""),
    ],
)
def test_normalize(raw, expected):
    assert normalize_answer(raw) == expected


def test_normalize_keeps_commas_of_bracketed_answers():
    assert normalize_answer("(100,200)") == "(100,200)"
    assert normalize_answer("1, 2") == "1,2"


def test_normalize_keeps_longer_commands():
    # \rightarrow is not \right followed by "arrow".
    assert normalize_answer(r"a \rightarrow b") == r"a\rightarrowb"


# --- parse_number ---------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("42", 42.0),
        ("-7", -7.0),
        ("+3", 3.0),
        ("0.25", 0.25),
        (".5", 0.5),
        ("3.", 3.0),
        ("1e3", 1000.0),
        ("2.5E-2", 0.025),
        ("1,000", 1000.0),
        ("50%", 50.0),
        (r"50\%", 50.0),
        ("1/2", 0.5),
        ("-3/4", -0.75),
        (r"\frac{1}{2}", 0.5),
        (r"\dfrac{3}{4}", 0.75),
        (r"\frac 1 2", 0.5),
        (r"\frac12", 0.5),
        (r"-\frac{1}{2}", -0.5),
        (r"\frac{-1}{4}", -0.25),
        ("$12$", 12.0),
    ],
)
def test_parse_number(raw, expected):
    assert parse_number(raw) == pytest.approx(expected)


@pytest.mark.parametrize(
    "raw",
    [
        "", "x", r"\sqrt{4}", "1/0", r"\frac{1}{0}", "2+3", "--5", "1e999",
        "(1,2)", r"\frac{1}", "1/2/3", "inf",
    ],
)
def test_parse_number_rejects_non_numbers(raw):
    assert parse_number(raw) is None


# --- answers_equivalent -----------------------------------------------------------


@pytest.mark.parametrize(
    "a, b",
    [
        ("42", "42"),
        ("1,000", "1000"),
        (r"\dfrac{3}{4}", "0.75"),
        (r"\dfrac{3}{4}", "3/4"),
        ("0.75", "3/4"),
        ("1/2", r"\frac{1}{2}"),
        (r"\frac{1}{2}", "0.5"),
        ("50%", "0.5"),
        ("50%", "50"),
        (r"50\%", "0.5"),
        ("x = 5", "5"),
        ("y=5", "$5$"),
        (r"6 \times 7 = 42", "6 * 7 = 42"),
        (r"6 \times 7 = 42", "42"),
        ("a = b = 3", "3.0"),
        ("2+x", "x+2"),
        ("a+b+c", "c+a+b"),
        ("x+1/2", "0.5+x"),
        (r"\sqrt{2}+1", r"1+\sqrt{2}"),
        ("(1, 2)", "(1,2)"),
        ("(0.5, 2)", r"(\frac{1}{2}, 2)"),
        (r"\{1, 2\}", r"\{2, 1\}"),
        ("1, 2", "1,2.0"),
        ("(x+1)", "x+1"),
        (r"\text{Yes}", "yes"),
        ("3.14159", "3.1416"),
        ("90^\\circ", "90"),
        ("-\\frac{1}{2}", "-0.5"),
    ],
)
def test_equivalent(a, b):
    assert answers_equivalent(a, b)
    assert answers_equivalent(b, a)


@pytest.mark.parametrize(
    "a, b",
    [
        ("", ""),
        ("", "5"),
        ("$ $", "$ $"),
        ("(1,2)", "(2,1)"),
        ("(1,2)", "[1,2]"),
        ("(1,2)", "(1,2,3)"),
        ("5", "6"),
        ("0.5", "50"),
        ("2+3", "5"),
        ("x+2", "x+3"),
        ("x-2", "x+2"),
        ("a+b=c", "b=c+a"),
        ("x<=5", "5"),
        ("x==5", "5"),
        ("6*7=42", "6*7=43"),
        ("2+3,1", "3,1+2"),
        (r"\sqrt{2}", "2"),
        ("x", "y"),
        ("1/0", r"\frac{1}{0}"),
    ],
)
def test_not_equivalent(a, b):
    assert not answers_equivalent(a, b)
    assert not answers_equivalent(b, a)


def test_equivalence_tolerances():
    assert not answers_equivalent("1.0", "1.001")
    assert answers_equivalent("1.0", "1.001", rel_tol=1e-2)
    assert answers_equivalent("0", "1e-9")
    assert not answers_equivalent("0", "1e-9", abs_tol=0.0)


# --- cluster_answers / majority_answer ----------------------------------------------


def test_cluster_greedy_in_order():
    answers = ["1/2", "3", "0.5", r"\frac{1}{2}", "3.0", "7"]
    assert cluster_answers(answers) == [[0, 2, 3], [1, 4], [5]]


def test_cluster_empty_answers_are_singletons():
    assert cluster_answers(["", "5", "", "5"]) == [[0], [1, 3], [2]]


def test_cluster_empty_input():
    assert cluster_answers([]) == []


def test_majority_returns_first_occurrence_of_largest_cluster():
    assert majority_answer(["3", "0.5", "1/2", "3.0", r"\frac{1}{2}"]) == "0.5"


def test_majority_tie_goes_to_earliest():
    assert majority_answer(["7", "5", "5.0", "7.0"]) == "7"


def test_majority_ignores_empty_answers():
    assert majority_answer(["", "", "", "4"]) == "4"


@pytest.mark.parametrize("answers", [[], [""], ["", "  ", "$ $"]])
def test_majority_none_when_all_empty(answers):
    assert majority_answer(answers) is None
