"""Cheap per-request features for the output-length ranker.

The scheduler featurizes every request once, as it arrives, in the scheduler
process; so a feature must cost microseconds and need nothing but the request
(no tokenizer, no model). What predicts output length cheaply:

* explicit cues in the instruction ("in one word", "yes or no", "write an
  essay", "step by step", "in 200 words"): the user usually says how much they
  want;
* the kind of task (code, translation, summary, rewrite): hashed word
  unigrams and bigrams catch the task vocabulary the cue list misses;
* the conversation's shape: turns, the system prompt, the previous answer;
* the caps the client set: ``max_new_tokens``, stop sequences, temperature.

Features about the instruction look at *the last user message* (extracted from
ChatML and a few other chat templates, else the whole text), and cues and
hashed words only at its first and last ``WINDOW_CHARS`` characters: the
instruction sits at the start or the end of a prompt that pastes a document,
and the window bounds the cost for long prompts. Counts (characters, lines,
question marks) cover the whole text with C-speed ``str`` methods.

The layout is ``FEATURE_NAMES``. Bump ``FEATURE_VERSION`` on any change to the
names, their order or how one is computed: a ranker trained on another version
is refused when it is loaded (``ranker.py``), since it would silently rank by
the wrong columns.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

FEATURE_VERSION: int = 1

NUM_HASH_BUCKETS = 256
"""Hashed word unigram/bigram buckets (a power of two: the bucket is the top
bits of a multiplicative hash)."""

WINDOW_CHARS = 2000
"""Cues and hashed words read the first and the last this many characters of
the last user message (the whole message when it is shorter than twice this)."""

MAX_NEW_TOKENS_UNSET = 1 << 20
"""``max_new_tokens`` feature value when the client set no cap: larger than
any context we serve, so a tree split puts "no cap" with the loosest caps
rather than with the tightest (0 would)."""

_ASKED_CAP = 100_000  # "in 10^9 words" must not become a huge float outlier


# -- Chat templates -----------------------------------------------------------


@dataclass(frozen=True)
class _ChatTemplate:
    """Markers of one chat template; the first whose ``user`` marker occurs in
    the prompt is used. ``ends`` close a turn (the earliest found wins)."""

    name: str
    user: str
    assistant: str
    system: str | None
    ends: tuple[str, ...]


_TEMPLATES: tuple[_ChatTemplate, ...] = (
    _ChatTemplate("chatml", "<|im_start|>user", "<|im_start|>assistant",
                  "<|im_start|>system", ("<|im_end|>",)),
    _ChatTemplate("llama3", "<|start_header_id|>user<|end_header_id|>",
                  "<|start_header_id|>assistant<|end_header_id|>",
                  "<|start_header_id|>system<|end_header_id|>", ("<|eot_id|>",)),
    _ChatTemplate("gemma", "<start_of_turn>user", "<start_of_turn>model", None,
                  ("<end_of_turn>",)),
    _ChatTemplate("phi_zephyr", "<|user|>", "<|assistant|>", "<|system|>",
                  ("<|end|>", "</s>")),
    # An answer ends at </s> or at the next [INST]; a user message at [/INST].
    _ChatTemplate("mistral", "[INST]", "[/INST]", None, ("[/INST]", "[INST]", "</s>")),
)


@dataclass(frozen=True)
class Conversation:
    """What the features need from the rendered prompt."""

    user_turns: int
    assistant_turns: int
    system: str
    last_user: str
    last_assistant: str


def _message_after(text: str, start: int, ends: tuple[str, ...]) -> str:
    """The message body from ``start`` to the earliest turn end (or the end)."""
    stop = len(text)
    for marker in ends:
        found = text.find(marker, start)
        if 0 <= found < stop:
            stop = found
    return text[start:stop].strip()


def parse_conversation(text: str) -> Conversation:
    """Split a rendered chat prompt into what the features use; a text with no
    known template is one user message (a raw completion prompt)."""
    for t in _TEMPLATES:
        last = text.rfind(t.user)
        if last < 0:
            continue
        system = ""
        if t.system is not None:
            at = text.find(t.system)
            if at >= 0:
                system = _message_after(text, at + len(t.system), t.ends)
        prev = text.rfind(t.assistant, 0, last)
        last_assistant = _message_after(text, prev + len(t.assistant), t.ends) if prev >= 0 else ""
        return Conversation(
            user_turns=text.count(t.user),
            assistant_turns=text.count(t.assistant),
            system=system,
            last_user=_message_after(text, last + len(t.user), t.ends),
            last_assistant=last_assistant,
        )
    return Conversation(0, 0, "", text.strip(), "")


# -- Length cues ---------------------------------------------------------------
#
# A cue is a set of words and phrases, matched against the instruction's words
# (``split_words``): a single word by set membership, a phrase as a substring
# of the words joined by single spaces. Matching words rather than regexes
# keeps a 1000-token prompt at tens of microseconds (``re`` scans an
# alternation that starts with ``\b`` position by position: milliseconds) and
# makes "step-by-step", "Step by step" and "step  by\nstep" the same phrase.

_SEPARATORS = str.maketrans({c: " " for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"})


def split_words(text: str) -> list[str]:
    """Lowercased words: runs between whitespace and ASCII punctuation.
    ``str.translate`` + ``split`` is several times faster than ``re``'s
    ``\\w+`` (non-ASCII punctuation stays inside words: harmless for hashing)."""
    return text.lower().translate(_SEPARATORS).split()


_CUES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("one_word", ("one word", "single word", "1 word")),
    ("yes_no", ("yes or no", "yes no", "true or false")),
    ("choice", ("which of the following", "multiple choice", "choose the", "choose one",
                "choose between", "choose from")),
    ("only_answer", ("only answer", "just answer", "only return",
                     "only output", "only reply", "only respond", "just say",
                     "no explanation", "no explanations", "without explanation",
                     "without any explanation", "without explanations")),
    ("one_sentence", ("one sentence", "single sentence", "1 sentence", "a sentence")),
    ("brief", ("brief", "briefly", "concise", "concisely", "short", "shortly", "succinct",
               "succinctly", "quick", "quickly", "in short")),
    ("classify", ("classify", "classification", "categorize", "categorise", "sentiment")),
    ("math", ("calculate", "compute", "solve", "how many", "how much")),
    ("translate", ("translate", "translation", "translated")),
    ("summarize", ("summary", "summarize", "summarise", "summarization", "summarisation",
                   "tldr", "tl dr")),
    ("rewrite", ("rewrite", "re write", "rephrase", "paraphrase", "proofread", "correct the",
                 "fix the")),
    ("explain", ("explain", "describe", "why", "how does", "how do", "how can", "how to",
                 "how would")),
    ("step_by_step", ("step by step", "walk me through")),
    ("list", ("list", "bullet", "bullets", "enumerate")),
    ("detailed", ("detail", "details", "detailed", "comprehensive", "thorough", "thoroughly",
                  "elaborate", "extensive", "extensively", "in depth")),
    ("essay", ("essay", "article", "report", "blog post")),
    ("story", ("story", "poem", "lyrics", "song", "letter", "speech", "dialogue")),
    ("code", ("code", "function", "program", "script", "implement", "python", "javascript",
              "sql", "class", "algorithm")),
    ("write", ("write", "generate", "create", "compose", "draft")),
    ("continue", ("continue", "go on", "keep going")),
)


@dataclass(frozen=True)
class _Cue:
    """One cue, split for matching: single words, and phrases as (their
    words, the phrase space-padded); a phrase is searched for only when all
    its words occur, which skips most substring scans."""

    name: str
    words: frozenset[str]
    phrases: tuple[tuple[frozenset[str], str], ...]

    def found(self, present: set[str], joined: str) -> bool:
        if not self.words.isdisjoint(present):
            return True
        return any(parts <= present and padded in joined for parts, padded in self.phrases)


def _make_cue(name: str, phrases: tuple[str, ...]) -> _Cue:
    for p in phrases:
        if p.split() != split_words(p) or p != " ".join(p.split()):
            raise ValueError(f"cue {name!r}: phrase {p!r} is not in normalized word form")
    return _Cue(name, frozenset(p for p in phrases if " " not in p),
                tuple((frozenset(p.split()), f" {p} ") for p in phrases if " " in p))


_CUE_MATCHERS = tuple(_make_cue(name, phrases) for name, phrases in _CUES)

_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15,
    "twenty": 20, "thirty": 30, "fifty": 50, "hundred": 100,
}
_ASK_UNITS = {
    "word": "asked_words",
    "sentence": "asked_sentences", "line": "asked_sentences",
    "paragraph": "asked_paragraphs", "section": "asked_paragraphs",
    "stanza": "asked_paragraphs", "verse": "asked_paragraphs",
    **dict.fromkeys(("item", "point", "bullet", "example", "idea", "tip", "step", "reason",
                     "question", "name", "fact", "way", "option", "suggestion"), "asked_items"),
}
_ASK_FORMS = {**_ASK_UNITS, **{unit + "s": name for unit, name in _ASK_UNITS.items()}}
_ASK_FORM_SET = frozenset(_ASK_FORMS)
_ASKED_NAMES = ("asked_words", "asked_sentences", "asked_paragraphs", "asked_items")

# -- Layout ---------------------------------------------------------------------

_DENSE_NAMES: tuple[str, ...] = (
    "prompt_tokens", "prompt_chars", "prompt_lines",
    "user_turns", "assistant_turns", "system_chars", "last_assistant_chars",
    "last_user_chars", "last_user_words", "last_user_lines", "last_user_share",
    "code_fences", "question_marks", "digit_ratio",
    "max_new_tokens", "temperature", "num_stop",
    *_ASKED_NAMES,
    *(f"cue_{cue.name}" for cue in _CUE_MATCHERS),
)
FEATURE_NAMES: tuple[str, ...] = _DENSE_NAMES + tuple(
    f"hash_{i:03d}" for i in range(NUM_HASH_BUCKETS)
)
NUM_FEATURES: int = len(FEATURE_NAMES)
NUM_DENSE: int = len(_DENSE_NAMES)
_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}


def feature_index(name: str) -> int:
    """Column of feature ``name``; KeyError naming it when there is none."""
    try:
        return _INDEX[name]
    except KeyError:
        raise KeyError(f"no feature named {name!r} (version {FEATURE_VERSION})") from None


# -- Request ---------------------------------------------------------------------


@dataclass(frozen=True)
class RequestInfo:
    """What the featurizer needs from one request.

    ``prompt_text`` is the full rendered prompt (chat template applied); pass
    "" for a request given only as token ids. ``max_new_tokens`` None means
    the client set no cap (featurized as ``MAX_NEW_TOKENS_UNSET``). The numbers
    are checked here, so a caller's bug surfaces where the request is built
    and ``featurize`` itself cannot fail.
    """

    prompt_text: str
    prompt_tokens: int
    max_new_tokens: int | None
    temperature: float
    num_stop: int

    def __post_init__(self) -> None:
        if not isinstance(self.prompt_text, str):
            raise TypeError(f"prompt_text must be str, got {type(self.prompt_text).__name__}")
        _check_count("prompt_tokens", self.prompt_tokens)
        _check_count("num_stop", self.num_stop)
        if self.max_new_tokens is not None:
            _check_count("max_new_tokens", self.max_new_tokens)
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float, np.floating)) \
                or not math.isfinite(t):
            raise ValueError(f"temperature must be a finite number, got {t!r}")


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")


# -- Hashed words -----------------------------------------------------------------

_HASH_CACHE_MAX = 200_000  # words; cleared when full (a few MB at most)
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constants for multiplicative hashing
_MIX_BIGRAM = np.uint64(0xC2B2AE3D27D4EB4F)
_BUCKET_SHIFT = np.uint64(64 - NUM_HASH_BUCKETS.bit_length() + 1)
assert NUM_HASH_BUCKETS & (NUM_HASH_BUCKETS - 1) == 0, "NUM_HASH_BUCKETS must be a power of two"


class _WordHashes(dict):
    """word -> crc32 of its UTF-8, memoized (prompts repeat words). crc32 is
    stable across processes, unlike hash(); surrogatepass so a lone surrogate
    in odd input cannot raise. A miss is computed in ``__missing__`` so the
    hot path is one C-level ``map(__getitem__)``."""

    def __missing__(self, word: str) -> int:
        if len(self) >= _HASH_CACHE_MAX:
            self.clear()
        h = zlib.crc32(word.encode("utf-8", "surrogatepass"))
        self[word] = h
        return h


_HASH_CACHE = _WordHashes()


def _hashed_words(words: list[str], out: np.ndarray) -> None:
    """Term frequencies of word unigrams and bigrams into ``out`` (the hash
    buckets): each term's share of all terms, so the vector says what the text
    is about independently of its length (a separate feature)."""
    if not words:
        return
    h = np.fromiter(map(_HASH_CACHE.__getitem__, words), dtype=np.uint64, count=len(words))
    uni = (h * _MIX) >> _BUCKET_SHIFT
    bi = (((h[:-1] * _MIX_BIGRAM) ^ h[1:]) * _MIX) >> _BUCKET_SHIFT
    counts = np.bincount(uni.astype(np.intp), minlength=NUM_HASH_BUCKETS)
    if bi.size:
        counts += np.bincount(bi.astype(np.intp), minlength=NUM_HASH_BUCKETS)
    out[:] = counts / float(uni.size + bi.size)


# -- Featurize ---------------------------------------------------------------------


def _window(text: str) -> str:
    """First and last WINDOW_CHARS characters: where an instruction sits."""
    if len(text) <= 2 * WINDOW_CHARS:
        return text
    return text[:WINDOW_CHARS] + "\n" + text[-WINDOW_CHARS:]


def _amount(word: str) -> int:
    """The number a word spells ("5", "five"), 0 when it is none."""
    value = _NUMBER_WORDS.get(word)
    if value is not None:
        return value
    return min(int(word[:9]), _ASKED_CAP) if word.isascii() and word.isdigit() else 0


def _asked_amounts(joined: str, present: set[str]) -> dict[str, float]:
    """Largest amount asked per unit ("in 200 words", "five bullet points"),
    found with C-speed ``str.find`` on the joined words, only for the unit
    words that occur (a Python loop over every word cost 100+ us)."""
    asked = dict.fromkeys(_ASKED_NAMES, 0.0)
    for form in _ASK_FORM_SET.intersection(present):
        name, needle = _ASK_FORMS[form], f" {form} "
        at = joined.find(needle)
        while at >= 0:
            value = _amount(joined[joined.rfind(" ", 0, at) + 1:at])
            asked[name] = max(asked[name], float(value))
            at = joined.find(needle, at + 1)
    return asked


def _digit_ratio(text: str) -> float:
    """Share of the text's UTF-8 bytes that are ASCII digits (numbers, data,
    arithmetic); ``bytes.translate`` deletes them in one C pass, 6x faster
    than counting each digit with ``str.count``."""
    data = text.encode("utf-8", "surrogatepass")
    return (len(data) - len(data.translate(None, b"0123456789"))) / len(data) if data else 0.0


def featurize(info: RequestInfo) -> np.ndarray:
    """The float32 vector (``NUM_FEATURES``,) for one request, in
    ``FEATURE_NAMES`` order. Never raises for any ``prompt_text`` (empty,
    megabytes, any unicode): it runs in the scheduler for every request."""
    vec = np.zeros(NUM_FEATURES, dtype=np.float32)
    text = info.prompt_text
    conv = parse_conversation(text)
    user = conv.last_user
    user_chars = len(user)
    instruction = _window(user)
    words = split_words(instruction)
    # Cues and asked amounts also count in the system prompt ("Answer in
    # under 50 words."); "|" keeps a phrase from spanning the two.
    cue_words = split_words(conv.system[:WINDOW_CHARS]) + ["|"] + words \
        if conv.system else words
    present = set(cue_words)
    joined = " " + " ".join(cue_words) + " "

    dense = {
        "prompt_tokens": info.prompt_tokens,
        "prompt_chars": len(text),
        "prompt_lines": text.count("\n") + 1 if text else 0,
        "user_turns": conv.user_turns,
        "assistant_turns": conv.assistant_turns,
        "system_chars": len(conv.system),
        "last_assistant_chars": len(conv.last_assistant),
        "last_user_chars": user_chars,
        "last_user_words": user.count(" ") + 1 if user else 0,
        "last_user_lines": user.count("\n") + 1 if user else 0,
        "last_user_share": user_chars / len(text) if text else 0.0,
        "code_fences": user.count("```"),
        "question_marks": user.count("?"),
        "digit_ratio": _digit_ratio(instruction),
        "max_new_tokens": MAX_NEW_TOKENS_UNSET if info.max_new_tokens is None
        else min(info.max_new_tokens, MAX_NEW_TOKENS_UNSET),
        "temperature": info.temperature,
        "num_stop": info.num_stop,
        **_asked_amounts(joined, present),
    }
    for cue in _CUE_MATCHERS:
        dense[f"cue_{cue.name}"] = 1.0 if cue.found(present, joined) else 0.0
    vec[:NUM_DENSE] = [dense[name] for name in _DENSE_NAMES]
    _hashed_words(words, vec[NUM_DENSE:])
    return vec
