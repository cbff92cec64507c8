"""Reading and comparing probed answers.

A probe asks the model for its current answer inside ``\\boxed{``; this module
extracts that answer, spots hesitation in the probe's text, puts answers into a
canonical text form, and decides when two answers mean the same thing. The
equivalence is deliberately conservative (numbers, fractions, percentages,
reordered flat sums, tuples and sets): a false "equal" would stop reasoning
early on a wrong answer, a false "different" only costs more tokens.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "HESITATION_WORDS",
    "answers_equivalent",
    "cluster_answers",
    "extract_probe_answer",
    "has_hesitation",
    "majority_answer",
    "normalize_answer",
    "parse_number",
]

HESITATION_WORDS = ("wait", "hold", "but", "okay", "no", "hmm")

_HESITATION_RE = re.compile(
    r"\b(?:" + "|".join(re.escape(w) for w in HESITATION_WORDS) + r")\b", re.IGNORECASE
)

_OPEN = "([{"
_CLOSE = ")]}"


def extract_probe_answer(text: str) -> str:
    """The inside of the box a probe's prompt opened: ``text`` up to its first
    unmatched ``}``, stripped; "" when the box was never closed."""
    depth = 0
    for i, ch in enumerate(text):
        if ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                return text[:i].strip()
            depth -= 1
    # No closing brace: the probe ran out of tokens mid-answer, which is no answer.
    return ""


def has_hesitation(text: str) -> bool:
    """True when ``text`` contains a hesitation word as a whole word (any case)."""
    return _HESITATION_RE.search(text) is not None


# ---------------------------------------------------------------------------
# Normalization
# ---------------------------------------------------------------------------

_TEXT_WRAPPER_RE = re.compile(r"\\(?:text|textrm|textbf|mathrm|mathbf|mbox)\s*\{")
_LEFT_RIGHT_RE = re.compile(r"\\(?:left|right)(?![A-Za-z])")
_SPACING_RE = re.compile(r"\\[!,;: ]")
_FRAC_VARIANT_RE = re.compile(r"\\[dt]frac(?![A-Za-z])")
# A digit group with thousands separators; not part of a decimal fraction and
# not followed by more digits or by another ",digit" (which would be a list).
_THOUSANDS_RE = re.compile(r"(?<![\d.])\d{1,3}(?:,\d{3})+(?!\d)(?!,\d)")
_DEGREES_RE = re.compile(r"\^\{?\\circ\}?|°")
_WHITESPACE_RE = re.compile(r"\s+")


def _matching_brace(s: str, start: int) -> int:
    """Index of the ``}`` closing the ``{`` at ``start``, or -1."""
    depth = 0
    for i in range(start, len(s)):
        if s[i] == "{":
            depth += 1
        elif s[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _unwrap_text_commands(s: str) -> str:
    """Replace ``\\text{X}`` (and similar) by ``X``."""
    pos = 0
    while True:
        m = _TEXT_WRAPPER_RE.search(s, pos)
        if m is None:
            return s
        open_at = m.end() - 1
        close_at = _matching_brace(s, open_at)
        if close_at < 0:
            # Unbalanced: leave the rest alone rather than guess.
            return s
        s = s[: m.start()] + s[open_at + 1 : close_at] + s[close_at + 1 :]
        pos = m.start()


def _strip_delimiters(s: str) -> str:
    """Drop surrounding math delimiters and a trailing period, repeatedly."""
    while True:
        before = s
        s = s.strip()
        if s.endswith(".") and not s.endswith(".."):
            s = s[:-1].rstrip()
        for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
            if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
                s = s[len(left) : len(s) - len(right)]
                break
        if s == before:
            return s


def _is_enclosed(s: str) -> bool:
    """Whether ``s`` is one bracketed group, e.g. ``(1,2)`` but not ``(1)+(2)``."""
    if len(s) < 2 or (s[0] not in _OPEN and not s.startswith("\\{")):
        return False
    depth = 0
    for i, ch in enumerate(s):
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
            if depth == 0:
                return i == len(s) - 1
    return False


def normalize_answer(answer: str) -> str:
    """Canonical text form of an answer (see the module docstring)."""
    s = _strip_delimiters(answer)
    s = _unwrap_text_commands(s)
    s = _LEFT_RIGHT_RE.sub("", s)
    s = _SPACING_RE.sub("", s)
    s = _FRAC_VARIANT_RE.sub(r"\\frac", s)
    s = s.replace("\\%", "%").replace("\\$", "")
    s = _strip_delimiters(s)
    # A bracketed answer's commas separate elements, never thousands.
    if not _is_enclosed(s):
        s = _THOUSANDS_RE.sub(lambda m: m.group(0).replace(",", ""), s)
    s = _WHITESPACE_RE.sub("", s)
    s = _DEGREES_RE.sub("", s)
    s = _strip_delimiters(s)
    return s.lower()


# ---------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------

_NUMBER_RE = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?")


def _frac_argument(s: str, i: int) -> tuple[str, int] | None:
    """The argument of ``\\frac`` at ``s[i]``: a ``{group}`` or one character."""
    if i >= len(s):
        return None
    if s[i] == "{":
        close = _matching_brace(s, i)
        if close < 0:
            return None
        return s[i + 1 : close], close + 1
    return s[i], i + 1


def _parse_value(s: str) -> float | None:
    """Value of a normalized signed number, ``a/b`` or ``\\frac{a}{b}``."""
    if not s:
        return None
    sign = 1.0
    if s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
        if not s or s[0] in "+-":
            return None
    value: float | None = None
    if _NUMBER_RE.fullmatch(s):
        value = float(s)
    elif s.startswith("\\frac"):
        first = _frac_argument(s, len("\\frac"))
        if first is None:
            return None
        second = _frac_argument(s, first[1])
        if second is None or second[1] != len(s):
            return None
        value = _divide(_parse_value(first[0]), _parse_value(second[0]))
    elif s.count("/") == 1:
        num, den = s.split("/")
        value = _divide(_parse_value(num), _parse_value(den))
    if value is None or not math.isfinite(value):
        return None
    return sign * value


def _divide(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den == 0:
        return None
    return num / den


def parse_number(answer: str) -> float | None:
    """Numeric value of an answer that is a plain number, fraction or
    percentage ("50%" -> 50.0); None for anything else (roots, expressions)."""
    s = normalize_answer(answer)
    if s.endswith("%"):
        s = s[:-1]
    return _parse_value(s)


def _numeric_candidates(s: str) -> tuple[float, ...]:
    """Values a normalized answer may stand for: "p%" reads as p or as p/100
    because models write a percentage both ways."""
    if s.endswith("%"):
        value = _parse_value(s[:-1])
        return () if value is None else (value, value / 100.0)
    value = _parse_value(s)
    return () if value is None else (value,)


# ---------------------------------------------------------------------------
# Equivalence
# ---------------------------------------------------------------------------

_NOT_AN_EQUATION_RE = re.compile(r"[<>!=]=")
# Relations and arrows: a "+" next to one is not a term of one flat sum.
_RELATION_RE = re.compile(
    r"[=<>]|\\(?:le|leq|ge|geq|ne|neq|approx|equiv|sim|to|implies|iff|in|"
    r"rightarrow|leftarrow|leftrightarrow|subset|subseteq)(?![a-z])"
)


# (rel_tol, abs_tol) for numeric comparisons.
_Tol = tuple[float, float]


def _split_top(s: str, sep: str) -> list[str]:
    """Split ``s`` on ``sep`` where it is outside every bracket."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(s):
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    parts.append(s[start:])
    return parts


def _brackets(s: str) -> tuple[str, str, str]:
    """(opening, closing, inside) of an enclosed answer."""
    if s.startswith("\\{") and s.endswith("\\}"):
        return "\\{", "\\}", s[2:-2]
    return s[0], s[-1], s[1:-1]


def _match_elements(xs: list[str], ys: list[str], ordered: bool, tol: _Tol) -> bool:
    """Element-wise equivalence, in order or as multisets (greedy matching)."""
    if len(xs) != len(ys):
        return False
    if ordered:
        return all(_equivalent(x, y, tol) for x, y in zip(xs, ys))
    unused = list(ys)
    for x in xs:
        for j, y in enumerate(unused):
            if _equivalent(x, y, tol):
                del unused[j]
                break
        else:
            return False
    return True


def _sum_terms(s: str) -> list[str] | None:
    """Terms of a flat sum ``s``, or None when ``s`` is not one we reorder."""
    if _RELATION_RE.search(s) or len(_split_top(s, ",")) > 1:
        return None
    terms = _split_top(s, "+")
    if any(not t for t in terms):
        return None
    return terms


def _equivalent(x: str, y: str, tol: _Tol) -> bool:
    """Equivalence of two normalized answers."""
    if not x or not y:
        return False
    if x == y:
        return True
    # "x=5" and "6\\times7=42" answer with their last side.
    x, y = _last_side(x), _last_side(y)
    # A lone parenthesized expression is the expression, not a 1-tuple.
    x, y = _unwrap_parens(x), _unwrap_parens(y)
    if x == y:
        return True

    x_enclosed, y_enclosed = _is_enclosed(x), _is_enclosed(y)
    if x_enclosed or y_enclosed:
        if not (x_enclosed and y_enclosed):
            return False
        xo, xc, xi = _brackets(x)
        yo, yc, yi = _brackets(y)
        if (xo, xc) != (yo, yc):
            # (1,2) is a point or open interval, [1,2] a closed one: different.
            return False
        ordered = xo != "\\{"  # only sets ignore order
        return _match_elements(_split_top(xi, ","), _split_top(yi, ","), ordered, tol)

    x_items, y_items = _split_top(x, ","), _split_top(y, ",")
    if len(x_items) > 1 or len(y_items) > 1:
        return _match_elements(x_items, y_items, True, tol)

    x_values, y_values = _numeric_candidates(x), _numeric_candidates(y)
    if x_values and y_values:
        rel_tol, abs_tol = tol
        return any(
            math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol) for a in x_values for b in y_values
        )

    x_terms, y_terms = _sum_terms(x), _sum_terms(y)
    if x_terms is None or y_terms is None or max(len(x_terms), len(y_terms)) < 2:
        return False
    return _match_elements(x_terms, y_terms, False, tol)


def _last_side(s: str) -> str:
    """The last side of an equation chain at the top level; ``s`` when it is
    not one (no ``=``, an empty side, or a comparison such as ``<=``)."""
    if _NOT_AN_EQUATION_RE.search(s):
        return s
    sides = _split_top(s, "=")
    return sides[-1] if len(sides) > 1 and all(sides) else s


def _unwrap_parens(s: str) -> str:
    """``(expr)`` -> ``expr`` while the parentheses hold a single element."""
    while (
        s.startswith("(")
        and s.endswith(")")
        and _is_enclosed(s)
        and len(_split_top(s[1:-1], ",")) == 1
    ):
        s = s[1:-1]
    return s


def answers_equivalent(a: str, b: str, rel_tol: float = 1e-4, abs_tol: float = 1e-8) -> bool:
    """Whether two answers are mathematically the same; empty answers never are."""
    x, y = normalize_answer(a), normalize_answer(b)
    if not x or not y:
        return False
    return _equivalent(x, y, (rel_tol, abs_tol))


def cluster_answers(answers: list[str]) -> list[list[int]]:
    """Greedy clusters of answer indices, each compared with its cluster's
    first member, in order; every empty answer is a singleton."""
    clusters: list[list[int]] = []
    for i, answer in enumerate(answers):
        for cluster in clusters:
            if answers_equivalent(answers[cluster[0]], answer):
                cluster.append(i)
                break
        else:
            clusters.append([i])
    return clusters


def majority_answer(answers: list[str]) -> str | None:
    """First occurrence of the largest cluster of non-empty answers (earliest
    wins ties); None when every answer is empty."""
    best: list[int] | None = None
    for cluster in cluster_answers(answers):
        if not normalize_answer(answers[cluster[0]]):
            continue
        # Clusters come in order of first occurrence, so ">" keeps the earliest on ties.
        if best is None or len(cluster) > len(best):
            best = cluster
    return None if best is None else answers[best[0]]


_LAST_NUMBER_RE = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def final_answer(text: str) -> str:
    """A full response's answer: its last ``\\boxed{...}``, else its last number."""
    if "\\boxed{" in text:
        return extract_probe_answer(text.rsplit("\\boxed{", 1)[1])
    numbers = _LAST_NUMBER_RE.findall(text)
    return numbers[-1] if numbers else ""
