"""ARCTIC_SUFFIX with the request features a user combines it with: sampled
decoding, streaming, n > 1, stop strings, structured output (regex / JSON
schema), a prompt near the context limit, and a bad request; the server
keeps serving throughout. Lossless greedy decoding is test_spec_lossless_suffix.py."""

from __future__ import annotations

import json
import re

import openai
import pytest
import requests


COPY_PROMPT = (
    "<|im_start|>user\nCopy this list exactly: apple, banana, cherry, apple, banana, cherry, "
    "apple, banana, cherry<|im_end|>\n<|im_start|>assistant\n"
)


@pytest.fixture(scope="module")
def suffix_url(suffix_server):
    # The session's SuffixDecoding server (test/conftest.py), at the default
    # verify width (the CPU default); the lossless test uses another.
    yield suffix_server.base_url
    assert suffix_server.alive(), suffix_server.log_tail()


def _generate(url, sampling_params, **extra):
    r = requests.post(url + "/generate", json={"text": COPY_PROMPT, "sampling_params": sampling_params,
                                               **extra}, timeout=300)
    return r


def test_greedy_request_speculates(suffix_url):
    r = _generate(suffix_url, {"temperature": 0, "max_new_tokens": 48})
    assert r.status_code == 200, r.text
    meta = r.json()["meta_info"]
    assert meta["spec_verify_ct"] > 0
    assert meta["completion_tokens"] / meta["spec_verify_ct"] > 1.0


def test_sampled_decoding(suffix_url):
    for seed in (1, 2):
        r = _generate(suffix_url, {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 32,
                                   "sampling_seed": seed})
        assert r.status_code == 200, r.text
        assert r.json()["meta_info"]["completion_tokens"] > 0


def test_streaming(suffix_url):
    r = requests.post(suffix_url + "/generate", json={
        "text": COPY_PROMPT, "stream": True,
        "sampling_params": {"temperature": 0, "max_new_tokens": 40}}, stream=True, timeout=300)
    assert r.status_code == 200
    chunks = [json.loads(line[5:]) for line in r.iter_lines()
              if line.startswith(b"data:") and line != b"data: [DONE]"]
    assert len(chunks) >= 2
    counts = [c["meta_info"]["completion_tokens"] for c in chunks]
    # several tokens may arrive per chunk (accepted drafts), never fewer than before
    assert counts == sorted(counts) and counts[-1] > 0
    assert chunks[-1]["meta_info"]["finish_reason"] is not None
    assert "".join(c["text"] for c in chunks) or chunks[-1]["text"]


def test_n_greater_than_one(suffix_url):
    client = openai.OpenAI(base_url=suffix_url + "/v1", api_key="none")
    model = client.models.list().data[0].id
    reply = client.chat.completions.create(
        model=model, n=3, temperature=0.7, max_tokens=24,
        messages=[{"role": "user", "content": "Name three fruits."}])
    assert len(reply.choices) == 3
    assert all(c.message.content for c in reply.choices)


def test_stop_string(suffix_url):
    r = _generate(suffix_url, {"temperature": 0, "max_new_tokens": 64, "stop": ["cherry"]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["meta_info"]["finish_reason"]["type"] == "stop"
    assert "cherry" not in out["text"]


def test_regex_constrained_output(suffix_url):
    pattern = r"(apple|banana|cherry)(, (apple|banana|cherry)){2}"
    r = _generate(suffix_url, {"temperature": 0, "max_new_tokens": 32, "regex": pattern})
    assert r.status_code == 200, r.text
    assert re.fullmatch(pattern, r.json()["text"]), r.json()["text"]


def test_json_schema_output(suffix_url):
    schema = {"type": "object", "properties": {"fruit": {"type": "string"}, "count": {"type": "integer"}},
              "required": ["fruit", "count"], "additionalProperties": False}
    r = _generate(suffix_url, {"temperature": 0, "max_new_tokens": 48, "json_schema": json.dumps(schema)})
    assert r.status_code == 200, r.text
    value = json.loads(r.json()["text"])
    assert set(value) == {"fruit", "count"} and isinstance(value["count"], int)


def test_near_the_context_limit(suffix_url):
    # 8192-token context: a prompt that leaves room for only a few tokens.
    text = "apple banana cherry " * 2720
    r = requests.post(suffix_url + "/generate", json={
        "text": text, "sampling_params": {"temperature": 0, "max_new_tokens": 64}}, timeout=600)
    if r.status_code == 400:
        assert "context length" in r.text  # too long for the model: a clear 4xx
    else:
        assert r.status_code == 200, r.text
        meta = r.json()["meta_info"]
        assert meta["prompt_tokens"] + meta["completion_tokens"] <= 8192


def test_bad_request_then_still_serving(suffix_url):
    r = _generate(suffix_url, {"temperature": 0, "max_new_tokens": -1})
    assert 400 <= r.status_code < 500
    assert _generate(suffix_url, {"temperature": 0, "max_new_tokens": 8}).status_code == 200


def test_server_wide_acceptance_is_reported(suffix_url):
    _generate(suffix_url, {"temperature": 0, "max_new_tokens": 48})
    info = requests.get(suffix_url + "/server_info", timeout=30).json()
    states = info.get("internal_states") or []
    lengths = [s["avg_spec_accept_length"] for s in states if "avg_spec_accept_length" in s]
    assert lengths and lengths[0] > 1.0, states
    # The same figure as a Prometheus gauge (set at the same decode-stats logging).
    metrics = requests.get(suffix_url + "/metrics", timeout=30)
    assert metrics.status_code == 200
    gauges = [float(line.rsplit(" ", 1)[1]) for line in metrics.text.splitlines()
              if line.startswith("sglang:spec_accept_length{")]
    assert gauges and max(gauges) > 1.0, [l for l in metrics.text.splitlines() if "accept" in l]
