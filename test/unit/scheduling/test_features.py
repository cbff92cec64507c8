"""Request featurizer: layout, determinism, cues, chat parsing, odd input, cost."""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sglang_arctic.scheduling.features import (
    FEATURE_NAMES,
    MAX_NEW_TOKENS_UNSET,
    NUM_DENSE,
    NUM_FEATURES,
    NUM_HASH_BUCKETS,
    RequestInfo,
    feature_index,
    featurize,
)

PYTHON_DIR = Path(__file__).resolve().parents[3] / "python"


def chatml(*turns: tuple[str, str], system: str | None = None) -> str:
    """A prompt rendered the way SmolLM2-Instruct's template does it."""
    parts = [f"<|im_start|>system\n{system}<|im_end|>\n"] if system else []
    parts += [f"<|im_start|>{role}\n{text}<|im_end|>\n" for role, text in turns]
    return "".join(parts) + "<|im_start|>assistant\n"


def info(text: str, **kw) -> RequestInfo:
    fields = {"prompt_tokens": len(text) // 4, "max_new_tokens": 256, "temperature": 0.7,
              "num_stop": 0}
    fields.update(kw)
    return RequestInfo(prompt_text=text, **fields)


def value(vec: np.ndarray, name: str) -> float:
    return float(vec[feature_index(name)])


def test_layout_is_dense_names_then_hash_buckets():
    assert len(FEATURE_NAMES) == NUM_FEATURES == len(set(FEATURE_NAMES))
    assert FEATURE_NAMES[NUM_DENSE:] == tuple(f"hash_{i:03d}" for i in range(NUM_HASH_BUCKETS))
    assert not any(n.startswith("hash_") for n in FEATURE_NAMES[:NUM_DENSE])
    with pytest.raises(KeyError, match="no_such_feature"):
        feature_index("no_such_feature")


def test_featurize_is_deterministic_float32_of_the_right_shape():
    request = info(chatml(("user", "Explain photosynthesis step by step.")))
    a, b = featurize(request), featurize(request)
    assert a.dtype == np.float32 and a.shape == (NUM_FEATURES,)
    assert np.array_equal(a, b)
    assert np.all(np.isfinite(a))


def test_request_numbers_are_copied_and_no_cap_is_a_large_sentinel():
    vec = featurize(info("hi", prompt_tokens=7, max_new_tokens=None, temperature=0.0, num_stop=3))
    assert value(vec, "prompt_tokens") == 7
    assert value(vec, "max_new_tokens") == MAX_NEW_TOKENS_UNSET
    assert value(vec, "temperature") == 0.0
    assert value(vec, "num_stop") == 3
    assert value(featurize(info("hi", max_new_tokens=64)), "max_new_tokens") == 64


@pytest.mark.parametrize(
    "field,bad",
    [("prompt_tokens", -1), ("num_stop", 1.5), ("max_new_tokens", -3), ("temperature", float("nan"))],
)
def test_request_info_names_a_bad_number(field, bad):
    with pytest.raises(ValueError, match=field):
        info("x", **{field: bad})


NEUTRAL = "Tell me about the ocean."


@pytest.mark.parametrize(
    "text,cue",
    [
        ("Tell me about the ocean in one word.", "cue_one_word"),
        ("Is the ocean salty? Answer yes or no.", "cue_yes_no"),
        ("Which of the following is an ocean: Pacific, Nile?", "cue_choice"),
        ("Tell me about the ocean in one sentence.", "cue_one_sentence"),
        ("Briefly tell me about the ocean.", "cue_brief"),
        ("Translate 'the ocean' into French.", "cue_translate"),
        ("Summarize what you know about the ocean.", "cue_summarize"),
        ("Tell me about the ocean step by step.", "cue_step_by_step"),
        ("List facts about the ocean.", "cue_list"),
        ("Explain the ocean.", "cue_explain"),
        ("Tell me about the ocean in detail.", "cue_detailed"),
        ("Write an essay about the ocean.", "cue_essay"),
        ("Write a poem about the ocean.", "cue_story"),
        ("Write Python code that simulates the ocean.", "cue_code"),
    ],
)
def test_a_length_cue_sets_its_feature(text, cue):
    before = featurize(info(chatml(("user", NEUTRAL))))
    after = featurize(info(chatml(("user", text))))
    assert value(before, cue) == 0.0
    assert value(after, cue) == 1.0


def test_neutral_text_has_no_cue():
    vec = featurize(info(chatml(("user", NEUTRAL))))
    cues = [n for n in FEATURE_NAMES if n.startswith("cue_") and value(vec, n)]
    assert cues == []


@pytest.mark.parametrize(
    "text,name,amount",
    [
        ("Describe the ocean in 200 words.", "asked_words", 200),
        ("Write a 500-word essay on tides.", "asked_words", 500),
        ("Give me five bullet points about whales.", "asked_items", 5),
        ("Write three paragraphs about coral.", "asked_paragraphs", 3),
        ("Answer in two sentences.", "asked_sentences", 2),
        ("Describe the ocean.", "asked_words", 0),
    ],
)
def test_asked_amounts_are_read(text, name, amount):
    assert value(featurize(info(text)), name) == amount


def test_features_describe_the_last_user_message_of_a_chat():
    system = "You are a helpful assistant."
    text = chatml(("user", "Write a long essay about rivers."),
                  ("assistant", "Rivers are... " * 20),
                  ("user", "Now name the longest one in one word."),
                  system=system)
    vec = featurize(info(text))
    assert value(vec, "cue_one_word") == 1.0
    assert value(vec, "cue_essay") == 0.0  # it was asked in an earlier turn
    assert value(vec, "user_turns") == 2
    assert value(vec, "assistant_turns") == 2  # the answer and the open generation turn
    assert value(vec, "system_chars") == len(system)
    assert value(vec, "last_assistant_chars") == len(("Rivers are... " * 20).strip())
    assert value(vec, "last_user_chars") == len("Now name the longest one in one word.")


def test_a_cue_in_the_system_prompt_counts():
    vec = featurize(info(chatml(("user", NEUTRAL), system="Always answer briefly.")))
    assert value(vec, "cue_brief") == 1.0


def test_plain_text_is_one_user_message():
    vec = featurize(info("  Explain gravity.\nThanks  "))
    assert value(vec, "user_turns") == 0
    assert value(vec, "last_user_chars") == len("Explain gravity.\nThanks")
    assert value(vec, "last_user_lines") == 2
    assert value(vec, "cue_explain") == 1.0


def test_other_chat_templates_are_recognised():
    llama3 = ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
              "Answer yes or no: is water wet?<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n")
    vec = featurize(info(llama3))
    assert value(vec, "user_turns") == 1
    assert value(vec, "cue_yes_no") == 1.0
    assert value(vec, "last_user_chars") == len("Answer yes or no: is water wet?")


def test_mistral_turns_are_split_at_their_markers():
    text = ("<s>[INST] Write an essay about tides. [/INST] Tides are caused by the moon.</s>"
            "[INST] Now answer in one word: what causes them? [/INST]")
    vec = featurize(info(text))
    assert value(vec, "user_turns") == 2
    assert value(vec, "last_assistant_chars") == len("Tides are caused by the moon.")
    assert value(vec, "last_user_chars") == len("Now answer in one word: what causes them?")
    assert value(vec, "cue_one_word") == 1.0 and value(vec, "cue_essay") == 0.0


def test_hashed_words_are_term_frequencies_that_tell_texts_apart():
    a = featurize(info("the cat sat on the mat"))[NUM_DENSE:]
    b = featurize(info("quantum field theory lecture notes"))[NUM_DENSE:]
    assert a.sum() == pytest.approx(1.0, abs=1e-5)
    assert b.sum() == pytest.approx(1.0, abs=1e-5)
    assert not np.array_equal(a, b)
    # Word order matters through bigrams.
    c = featurize(info("mat the on sat cat the"))[NUM_DENSE:]
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    "text",
    ["", " ", "\x00\x01", "\ud800 lone surrogate", "🙂" * 1000, "<|im_start|>user",
     "<|im_start|>user\n<|im_end|>", "<|im_start|>system\nno end", "[INST]", "9" * 10_000,
     "word " * 1_000_000],
    ids=["empty", "space", "control", "surrogate", "emoji", "bare-marker", "empty-user",
         "unclosed-system", "bare-inst", "digits", "huge"],
)
def test_odd_text_never_raises(text):
    vec = featurize(info(text))
    assert vec.shape == (NUM_FEATURES,) and np.all(np.isfinite(vec))


_SUBPROCESS = """
import sys
from sglang_arctic.scheduling.features import RequestInfo, featurize
text = sys.stdin.read()
sys.stdout.write(featurize(RequestInfo(text, 12, 100, 0.5, 1)).tobytes().hex())
"""


def test_hashing_is_stable_across_processes():
    text = chatml(("user", "Summarize the plot of Hamlet in three sentences, please."))
    here = featurize(RequestInfo(text, 12, 100, 0.5, 1)).tobytes().hex()
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed,
               "PYTHONPATH": os.pathsep.join([str(PYTHON_DIR), os.environ.get("PYTHONPATH", "")])}
        out = subprocess.run([sys.executable, "-c", _SUBPROCESS], input=text, env=env,
                             capture_output=True, text=True, check=True, timeout=60)
        assert out.stdout == here


def _thousand_token_prompt() -> str:
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(2000)] + "the of and to in is for explain list code".split()
    body = " ".join(rng.choice(vocab) for _ in range(750))
    return chatml(("user", f"Please summarize briefly, in 100 words: {body}?"),
                  system="You are a helpful assistant.")


def test_featurizing_a_1000_token_prompt_is_cheap():
    request = info(_thousand_token_prompt(), prompt_tokens=1000)
    featurize(request)
    times = []
    for _ in range(50):
        start = time.perf_counter()
        featurize(request)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"featurize 1000-token prompt: median {median * 1e6:.0f} us")
    assert median < 2e-3
