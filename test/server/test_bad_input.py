"""Bad input gets a clear 4xx (or a clear start-up error) and the server keeps serving."""

from __future__ import annotations

import pytest
import requests

from sglang_arctic.testing.server import run_to_exit

TIMEOUT = 60
CHAT = {"model": "default", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}

BAD_REQUESTS = [
    # (id, path, raw body, words the error message must contain)
    ("malformed-json-generate", "/generate", b'{"text": "hi", ', "JSON"),
    ("malformed-json-chat", "/v1/chat/completions", b'{"model": ', "JSON"),
    ("unknown-field-generate", "/generate",
     b'{"text": "hi", "max_token": 5, "sampling_params": {"max_new_tokens": 2}}', "max_token"),
    ("unknown-field-chat", "/v1/chat/completions",
     b'{"model": "default", "messages": [{"role": "user", "content": "hi"}], "max_token": 5}',
     "max_token"),
    ("unknown-field-completions", "/v1/completions",
     b'{"model": "default", "prompt": "hi", "temprature": 0.5}', "temprature"),
    ("unknown-sampling-param", "/generate",
     b'{"text": "hi", "sampling_params": {"max_new_tokens": 2, "bogus": 1}}', "bogus"),
    ("negative-max-new-tokens", "/generate",
     b'{"text": "hi", "sampling_params": {"max_new_tokens": -5}}', "max_new_tokens"),
    ("negative-max-tokens-chat", "/v1/chat/completions",
     b'{"model": "default", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -3}',
     "max_new_tokens"),
    # Found by fuzzing (test/reliability/test_abuse.py): each was a 500, the first crashed the scheduler.
    ("top-logprobs-wider-than-vocab", "/generate",
     b'{"text": "hi", "return_logprob": true, "top_logprobs_num": 1000000, '
     b'"sampling_params": {"max_new_tokens": 2}}', "top_logprobs_num"),
    ("response-format-not-an-object", "/v1/chat/completions",
     b'{"model": "default", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, '
     b'"response_format": 3.5}', "invalid request body"),
    ("rid-list-for-one-prompt", "/generate",
     b'{"text": "hi", "rid": ["a", "b"], "sampling_params": {"max_new_tokens": 2}}', "rid"),
    ("empty-prompt-generate", "/generate", b'{"text": "", "sampling_params": {"max_new_tokens": 2}}', "empty"),
    ("empty-sampling-params-list", "/generate", b'{"text": "hi", "sampling_params": []}', "fit together"),
    ("empty-prompt-completions", "/v1/completions",
     b'{"model": "default", "prompt": "", "max_tokens": 2}', "empty"),
    ("sampling-param-named-empty", "/generate",
     b'{"text": "hi", "sampling_params": {"max_new_tokens": 2, "": 1}}', "unknown field"),
    ("session-param-named-empty", "/generate",
     b'{"text": "hi", "session_params": {"": ""}, "sampling_params": {"max_new_tokens": 2}}',
     "session parameter"),
    ("input-id-outside-vocabulary", "/generate",
     b'{"input_ids": [1, 1000000000], "sampling_params": {"max_new_tokens": 2}}', "input_ids"),
    ("json-nested-too-deeply", "/v1/completions", b"[" * 5000 + b"]" * 5000, "nested"),
    ("prompt-longer-than-context", "/generate",
     ('{"text": "' + "hello " * 9000 + '", "sampling_params": {"max_new_tokens": 4}}').encode(),
     "context length"),
    # Streamed: refused before the first token, a 4xx rather than a 200 carrying an error event.
    ("empty-prompt-generate-stream", "/generate",
     b'{"text": "", "stream": true, "sampling_params": {"max_new_tokens": 2}}', "empty"),
    ("prompt-longer-than-context-stream", "/generate",
     ('{"text": "' + "hello " * 9000 + '", "stream": true, "sampling_params": {"max_new_tokens": 4}}').encode(),
     "context length"),
    ("negative-max-tokens-chat-stream", "/v1/chat/completions",
     b'{"model": "default", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -3, "stream": true}',
     "max_new_tokens"),
]


def still_serves(base_url):
    resp = requests.post(
        base_url + "/generate",
        json={"text": "1, 2, 3,", "sampling_params": {"max_new_tokens": 4, "temperature": 0}},
        timeout=TIMEOUT,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["meta_info"]["completion_tokens"] == 4


@pytest.mark.parametrize("path,body,words", [b[1:] for b in BAD_REQUESTS],
                         ids=[b[0] for b in BAD_REQUESTS])
def test_bad_request_is_a_clear_4xx(base_url, path, body, words):
    resp = requests.post(
        base_url + path, data=body, headers={"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:300])
    assert words.lower() in resp.text.lower(), resp.text[:300]
    still_serves(base_url)


def test_known_optional_fields_still_accepted(base_url):
    """The unknown-field check must not reject fields the API does define."""
    body = dict(CHAT, top_k=3, seed=1, stream=False, logprobs=False, n=1)
    resp = requests.post(base_url + "/v1/chat/completions", json=body, timeout=TIMEOUT)
    assert resp.status_code == 200, resp.text
    resp = requests.post(
        base_url + "/generate",
        json={"text": "hi", "rid": "abc", "sampling_params": {"max_new_tokens": 2},
              "return_logprob": True},
        timeout=TIMEOUT,
    )
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize(
    "argv,words",
    [
        (["--arctic-cpu-kv-tokens", "5"], "--arctic-cpu-kv-tokens must be >= 256, got 5"),
        (["--arctic-cpu-kv-tokens", "many"], "invalid int value"),
        (["--arctic-no-such-flag", "1"], "--arctic-no-such-flag"),
        (["--model-path", "/nonexistent/model/dir"], "/nonexistent/model/dir"),
    ],
    ids=["out-of-range", "wrong-type", "unknown-arctic-flag", "missing-model"],
)
def test_bad_launcher_flags_are_clear_startup_errors(argv, words):
    done = run_to_exit(argv + ["--port", "1"], timeout=180)
    assert done.returncode != 0
    assert words in done.stderr + done.stdout, (done.stderr + done.stdout)[-2000:]
