"""Dynasor on the real server (the session's default server: the launcher
accepts the per-request ``dynasor`` and ``certaindex`` objects by default):
probe-in-the-middle early exit, and self-consistency with an adaptive sample
count.

Probes run greedy here (``probe_temperature`` 0) so that what they answer is
a function of the prompt, and the prompts are chosen so that the small
default model either keeps giving one answer (the request must stop early)
or keeps changing it (the request must not).
"""

from __future__ import annotations

import json
import time
import uuid

import openai
import pytest
import requests

from sglang_arctic.reasoning.answers import answers_equivalent, majority_answer
from sglang_arctic.reasoning.certainty import certaindex
from sglang_arctic.reasoning.settings import DEFAULT_PROBE_SUFFIX
from sglang_arctic.testing.server import requests_in_flight

TIMEOUT = 180
BLOCK_START = "**Final Answer**"

def _chat(text: str) -> str:
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


# A long explanation whose answer, asked for at any point, is the same.
SETTLED = _chat("What is 6 times 7? Explain your reasoning step by step in detail.")
# The answer moves with every probe: the output counts upwards.
COUNTING = "Count from 1 to 200: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"


def generate(base_url, text, dynasor, max_new_tokens, stream=False, **extra):
    body = {"text": text, "sampling_params": {"max_new_tokens": max_new_tokens, "temperature": 0},
            "dynasor": dynasor, "stream": stream, **extra}
    return requests.post(base_url + "/generate", json=body, timeout=TIMEOUT, stream=stream)


def greedy_probes(**knobs):
    return {"probe_temperature": 0.0, **knobs}


def test_probes_run_at_the_interval_and_never_reach_the_output(base_url):
    resp = generate(base_url, COUNTING, greedy_probes(probe_interval=8, certainty_window=50,
                                                      probe_max_tokens=4), 48)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    report = out["meta_info"]["dynasor"]
    # One probe at a time, each short enough to finish within an interval.
    assert report["probe_positions"] == [8, 16, 24, 32, 40], report
    assert report["probes"] == 5 and report["failed_probes"] == 0
    assert report["probe_tokens"] > 0 and not report["stopped_early"]
    assert out["meta_info"]["finish_reason"]["type"] == "length"
    assert out["meta_info"]["completion_tokens"] == 48
    assert "boxed" not in out["text"] and "Final Answer" not in out["text"], out["text"]


def test_consistent_answers_stop_the_request_early(base_url):
    resp = generate(base_url, SETTLED, greedy_probes(probe_interval=16, certainty_window=3), 400)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    meta, report = out["meta_info"], out["meta_info"]["dynasor"]
    assert report["stopped_early"], report
    window = report["answers"][-3:]
    assert len(window) == 3 and all(answers_equivalent(window[0], a) for a in window), report
    assert meta["finish_reason"]["type"] == "stop"
    assert meta["completion_tokens"] < 100, meta
    generated = report["generated_tokens"]
    assert report["probe_positions"][-1] <= generated < meta["completion_tokens"], report
    assert report["tokens_saved"] == 400 - generated
    assert out["text"].rstrip().endswith(f"\\boxed{{{window[-1]}}} \\]"), out["text"]
    assert BLOCK_START in out["text"]


def test_disagreeing_answers_do_not_stop_it(base_url):
    # The probe continues the count inside the box: its answer moves with the
    # output (and the small model drifts later on). Whatever it answers, the
    # request must stop exactly at the first window of agreeing answers, and
    # never before it.
    max_new, window = 96, 2
    resp = generate(base_url, COUNTING, greedy_probes(probe_interval=8, certainty_window=window,
                                                      probe_suffix=" \\boxed{", probe_max_tokens=6),
                    max_new)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    report = out["meta_info"]["dynasor"]
    answers, positions = report["answers"], report["probe_positions"]
    agreeing = [i for i in range(window - 1, len(answers))
                if answers[i] and all(answers_equivalent(answers[i], a) for a in answers[i - window + 1:i])
                and not set(range(i - window + 1, i + 1)) & set(report["hesitant_probes"])]
    first = agreeing[0] if agreeing else None
    # The premise: several windows disagreed before any agreement.
    assert (first if first is not None else len(answers)) >= 3, report
    if first is None:
        assert not report["stopped_early"], report
        assert out["meta_info"]["finish_reason"]["type"] == "length"
        assert out["meta_info"]["completion_tokens"] == max_new
    else:
        assert report["stopped_early"] and len(answers) == first + 1, report
        assert report["generated_tokens"] >= positions[first]


def test_streaming_client_sees_the_final_answer_as_the_last_chunk(base_url):
    resp = generate(base_url, SETTLED, greedy_probes(probe_interval=16, certainty_window=3), 400,
                    stream=True)
    assert resp.status_code == 200
    texts, last = [], None
    for line in resp.iter_lines():
        if not line.startswith(b"data:") or line == b"data: [DONE]":
            continue
        last = json.loads(line[5:])
        texts.append(last["text"])
    assert last["meta_info"]["dynasor"]["stopped_early"]
    assert last["meta_info"]["finish_reason"]["type"] == "stop"
    assert BLOCK_START in texts[-1] and all(BLOCK_START not in t for t in texts[:-1])
    assert all(DEFAULT_PROBE_SUFFIX[:20] not in t for t in texts)


def test_openai_chat_accepts_extra_body(base_url):
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="unused", timeout=TIMEOUT)
    messages = [{"role": "user", "content": "What is 6 times 7? Explain step by step."}]
    chat = client.chat.completions.create(
        model="default", messages=messages, max_tokens=64, temperature=0,
        extra_body={"dynasor": {"saving_effort": "crazy", "probe_temperature": 0.0}})
    assert chat.choices[0].finish_reason in ("stop", "length")
    report = chat.metadata["dynasor"]  # the OpenAI answer's free-form metadata object
    assert report["probes"] >= 1 and report["probe_tokens"] > 0, report
    assert 0 < report["generated_tokens"] <= chat.usage.completion_tokens, (report, chat.usage)
    assert "boxed{" not in chat.choices[0].message.content or BLOCK_START in chat.choices[0].message.content
    stream = client.chat.completions.create(
        model="default", messages=messages, max_tokens=64, temperature=0, stream=True,
        extra_body={"dynasor": {"saving_effort": "crazy", "probe_temperature": 0.0}})
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == chat.choices[0].message.content


def test_probes_reuse_the_running_request_s_cached_prefix(base_url):
    interval = 16
    # A prompt no other request shares: every cache hit comes from this request.
    prompt = _chat(f"[{uuid.uuid4().hex}] What is 6 times 7? Explain your reasoning step by step in detail.")
    out = generate(base_url, prompt, greedy_probes(probe_interval=interval, certainty_window=50,
                                                  probe_max_tokens=4), 96).json()
    report = out["meta_info"]["dynasor"]
    assert report["probes"] >= 4, report
    # Probe k's prefix is the prompt and the first 16k output tokens. The
    # previous probe only left the first 16(k-1) of them in the tree; the rest
    # is found because the running request's decoded tokens were published
    # (at most the token decoded last may be missing).
    missing = report["probe_prefix_tokens"] - report["probe_cached_tokens"]
    assert 0 <= missing <= 2 * report["probes"], report
    assert report["probe_cached_tokens"] / report["probe_prompt_tokens"] >= 0.6, report


def _wait_idle(base_url, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while requests_in_flight(base_url) and time.monotonic() < deadline:
        time.sleep(0.2)
    return requests_in_flight(base_url)


def test_disconnecting_client_cancels_its_probes(arctic_server, base_url):
    assert _wait_idle(base_url, 30) == 0
    log_offset = arctic_server.log_path.stat().st_size
    resp = generate(base_url, COUNTING, greedy_probes(probe_interval=4, certainty_window=50,
                                                      probe_max_tokens=400), 2000, stream=True)
    seen_two = False
    deadline = time.monotonic() + 60
    for i, line in enumerate(resp.iter_lines()):
        if i >= 12 and not seen_two:
            # The main request and its (long) probe are both in the scheduler.
            seen_two = requests_in_flight(base_url) == 2
        if seen_two or time.monotonic() > deadline:
            break
    resp.close()
    assert seen_two
    # A 400-token probe would take far longer than this to finish by itself.
    assert _wait_idle(base_url, 10) == 0
    # The abort SGLang runs after a streaming client left went through cleanly.
    with open(arctic_server.log_path, errors="replace") as log:
        log.seek(log_offset)
        assert "Exception in ASGI application" not in log.read()


@pytest.mark.parametrize("bad", [
    "fast", 3, [], {"probe_interval": 0}, {"probe_interval": "8"}, {"certainty_window": True},
    {"saving_effort": "max"}, {"probe_top_p": 0}, {"probe_max_tokens": 100000}, {"interval": 8},
    {"enabled": "yes"}, {"probe_suffix": ""},
], ids=repr)
def test_malformed_dynasor_object_is_a_400(base_url, bad):
    for path, body in (
        ("/generate", {"text": "hi", "sampling_params": {"max_new_tokens": 2}}),
        ("/v1/chat/completions", {"model": "default", "messages": [{"role": "user", "content": "hi"}],
                                  "max_tokens": 2}),
    ):
        resp = requests.post(base_url + path, json={**body, "dynasor": bad}, timeout=TIMEOUT)
        assert resp.status_code == 400, (path, resp.status_code, resp.text)
        assert "dynasor" in resp.json()["message"], resp.text


def test_dynasor_with_incompatible_options_is_a_400_and_off_is_plain(base_url):
    resp = requests.post(base_url + "/generate", json={
        "text": "hi", "sampling_params": {"max_new_tokens": 2, "n": 2}, "dynasor": True}, timeout=TIMEOUT)
    assert resp.status_code == 400 and "n > 1" in resp.text, resp.text
    # A stream refused before its first token is a 400 too, not a 200 carrying an error event.
    streamed = generate(base_url, "hi", True, 2, stream=True, return_logprob=True)
    assert streamed.status_code == 400 and "logprobs" in streamed.json()["message"], streamed.text
    plain = generate(base_url, COUNTING, False, 8).json()
    assert "dynasor" not in plain["meta_info"]
    assert requests.get(base_url + "/health", timeout=30).status_code == 200


# -- Certaindex self-consistency ------------------------------------------------


def _program(base_url, temperature, certaindex, max_new_tokens=24):
    return requests.post(base_url + "/generate", timeout=TIMEOUT, json={
        "text": SETTLED, "sampling_params": {"max_new_tokens": max_new_tokens, "temperature": temperature},
        "certaindex": certaindex})


def test_self_consistency_stops_once_the_samples_agree(base_url):
    # Greedy samples are identical: certain after the first wave.
    resp = _program(base_url, 0.0, {"max_samples": 6, "wave_size": 2, "threshold": 0.9})
    assert resp.status_code == 200, resp.text
    samples = resp.json()
    assert isinstance(samples, list) and len(samples) == 2
    report = samples[0]["meta_info"]["certaindex"]
    assert report["waves"] == 1 and report["stopped_early"] and report["certaindex"] == 1.0
    assert len({s["text"] for s in samples}) == 1


def test_self_consistency_continues_while_the_samples_disagree(base_url):
    settings = {"max_samples": 6, "wave_size": 2, "threshold": 1.0}
    resp = _program(base_url, 1.3, settings, max_new_tokens=32)
    assert resp.status_code == 200, resp.text
    samples = resp.json()
    report = samples[0]["meta_info"]["certaindex"]
    answers = report["answers"]
    assert len(samples) == len(answers) == report["samples"]
    # The rule, whatever the sampled answers: stop after the first wave whose
    # answers so far reach the threshold, never before; else use every sample.
    reached = [w for w in range(1, 4) if certaindex(answers[:2 * w]) >= 1.0 and 2 * w <= len(answers)]
    expected_waves = reached[0] if reached else 3
    assert report["waves"] == expected_waves and len(samples) == 2 * expected_waves, report
    assert report["answer"] == majority_answer(answers)


def test_certaindex_requests_that_cannot_be_served_are_a_400(base_url):
    chat = requests.post(base_url + "/v1/chat/completions", timeout=TIMEOUT, json={
        "model": "default", "messages": [{"role": "user", "content": "hi"}], "certaindex": True})
    assert chat.status_code == 400 and "/generate" in chat.json()["message"], chat.text
    for extra in ({"stream": True}, {"dynasor": True}, {"sampling_params": {"n": 2}}):
        body = {"text": "hi", "sampling_params": {"max_new_tokens": 2}, "certaindex": True, **extra}
        resp = requests.post(base_url + "/generate", json=body, timeout=TIMEOUT)
        assert resp.status_code == 400 and "certaindex" in resp.text, (extra, resp.text)
