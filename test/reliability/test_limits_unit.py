"""The HTTP-edge limits and the launcher's safe defaults, without a server:
the middleware is driven with raw ASGI messages, the launcher through build_argv."""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest

from sglang_arctic.api.limits import RequestLimits, RequestLimitsMiddleware, body_problem, raised_validating_request
from sglang_arctic.api.server_defaults import UnsafeBindError, flag_value, is_loopback, safe_server_args
from sglang_arctic.config import ArcticConfig

LIMITS = RequestLimits(max_request_bytes=1000, max_n=4, retry_after_s=7)


class _App:
    """Records the body it was handed and answers 200, or a given status."""

    def __init__(self, status: int = 200):
        self.status = status
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send):
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def _call(app, path: str, body: bytes = b"", method: str = "POST", chunks: int = 1,
          headers: list | None = None, draining: bool = False):
    mw = RequestLimitsMiddleware(app, LIMITS, lambda: draining)
    if headers is None:
        headers = [(b"content-type", b"application/json")]
    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    size = max(1, -(-len(body) // chunks))
    parts = [body[i:i + size] for i in range(0, len(body), size)] or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
                for i, p in enumerate(parts)]
    sent: list[dict] = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(m):
        sent.append(m)

    asyncio.run(mw(scope, receive, send))
    start = sent[0]
    hdrs = {k.decode(): v.decode() for k, v in start.get("headers", [])}
    payload = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], hdrs, payload


def test_body_within_limit_reaches_the_app_unchanged():
    app = _App()
    body = json.dumps({"text": "hi", "sampling_params": {"n": 4}}).encode()
    status, _, _ = _call(app, "/generate", body, chunks=3)
    assert status == 200 and app.bodies == [body]


@pytest.mark.parametrize("declare", [True, False])
def test_oversized_body_gets_413_before_the_app(declare):
    app = _App()
    body = b'{"text": "' + b"x" * 2000 + b'"}'
    headers = [(b"content-length", str(len(body)).encode())] if declare else []
    status, _, payload = _call(app, "/v1/completions", body, chunks=4, headers=headers)
    assert status == 413 and app.bodies == []
    assert b"--arctic-max-request-bytes" in payload


@pytest.mark.parametrize("path,body", [
    ("/v1/completions", {"prompt": "a", "n": 5}),
    ("/v1/chat/completions", {"messages": [], "n": 99}),
    ("/v1/completions", {"prompt": "a", "best_of": 5}),
    ("/generate", {"text": "a", "sampling_params": {"n": 5}}),
    ("/generate", {"text": ["a", "b"], "sampling_params": [{"n": 1}, {"n": 1000}]}),
])
def test_n_above_the_limit_gets_400(path, body):
    app = _App()
    status, _, payload = _call(app, path, json.dumps(body).encode())
    assert status == 400 and app.bodies == []
    assert json.loads(payload)["param"] == "n"


def test_body_problems_are_named_and_unreadable_bodies_left_to_the_route():
    assert body_problem("/generate", b"not json", 4) == (None, None)
    assert body_problem("/generate", b"[1, 2]", 4) == (None, None)
    assert body_problem("/v1/completions", b'{"n": "3"}', 4) == (None, None)  # the route's validation answers
    assert body_problem("/v1/completions", b'{"n": true}', 4) == (None, None)
    assert body_problem("/v1/completions", b'{"n": 3}', 4) == (None, None)
    assert body_problem("/v1/completions", b'{"n": 5}', 0) == (None, None)  # no limit
    assert body_problem("/v1/completions", b"[" * 5000 + b"]" * 5000, 4)[0] == "The JSON body is nested too deeply."
    assert body_problem("/generate", b'{"text": "a", "rid": ["x"]}', 4)[1] == "rid"
    assert body_problem("/generate", b'{"text": "a", "rid": 5}', 4)[1] == "rid"
    assert body_problem("/generate", b'{"text": ["a", "b"], "rid": ["x", "y"]}', 4) == (None, None)
    assert body_problem("/generate", b'{"input_ids": [[1], [2]], "rid": ["x", "y"]}', 4) == (None, None)
    assert body_problem("/generate", b'{"text": "a", "rid": "x"}', 4) == (None, None)


def test_exceptions_from_request_validation_become_400_others_stay_errors():
    import pydantic

    class Model(pydantic.BaseModel):
        response_format: object = None

        @pydantic.model_validator(mode="before")
        @classmethod
        def check(cls, values):
            values["response_format"].get("type")  # assumes a dict, like SGLang's models
            return values

    class _ValidatingApp(_App):
        async def __call__(self, scope, receive, send):
            Model.model_validate({"response_format": 3.5})

    class _BrokenApp(_App):
        async def __call__(self, scope, receive, send):
            raise RuntimeError("a server bug")

    status, _, payload = _call(_ValidatingApp(), "/v1/chat/completions", b"{}")
    assert status == 400 and b"AttributeError" in payload
    with pytest.raises(RuntimeError):
        _call(_BrokenApp(), "/v1/chat/completions", b"{}")
    try:
        raise ValueError("x")
    except ValueError as exc:
        assert not raised_validating_request(exc)


def test_draining_answers_503_except_health():
    app = _App()
    status, hdrs, _ = _call(app, "/v1/completions", b"{}", draining=True)
    assert status == 503 and hdrs["retry-after"] == "7" and app.bodies == []
    status, _, _ = _call(app, "/health", method="GET", draining=True)
    assert status == 200


def test_every_503_gets_retry_after():
    status, hdrs, _ = _call(_App(status=503), "/generate", b"{}")
    assert status == 503 and hdrs["retry-after"] == "7"
    status, hdrs, _ = _call(_App(status=500), "/generate", b"{}")
    assert "retry-after" not in hdrs


# -- launcher defaults --------------------------------------------------------


def test_loopback_detection():
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.0.0.5", "example.com"):
        assert not is_loopback(host), host


def test_public_bind_needs_a_key_or_an_explicit_flag():
    config = ArcticConfig()
    with pytest.raises(UnsafeBindError, match="--api-key"):
        safe_server_args(["--host", "0.0.0.0"], config)
    with pytest.raises(UnsafeBindError):
        safe_server_args(["--host=::"], config)
    safe_server_args(["--host", "0.0.0.0", "--api-key", "k"], config)
    safe_server_args(["--host", "0.0.0.0"], ArcticConfig(allow_public_bind=True))
    safe_server_args(["--host", "127.0.0.1"], config)


def test_queue_bound_and_timeout_defaults(monkeypatch):
    monkeypatch.delenv("SGLANG_REQ_WAITING_TIMEOUT", raising=False)
    argv = safe_server_args(["--port", "1"], ArcticConfig(max_queued_requests=9, queue_timeout=12.5))
    assert flag_value(argv, "--max-queued-requests") == "9"
    import os

    assert os.environ["SGLANG_REQ_WAITING_TIMEOUT"] == "12.5"
    # The user's values win.
    monkeypatch.setenv("SGLANG_REQ_WAITING_TIMEOUT", "3")
    argv = safe_server_args(["--max-queued-requests=2"], ArcticConfig())
    assert flag_value(argv, "--max-queued-requests") == "2"
    assert os.environ["SGLANG_REQ_WAITING_TIMEOUT"] == "3"


def test_launcher_refuses_an_open_public_bind():
    from sglang_arctic.launch_server import build_argv

    with pytest.raises(SystemExit, match="arctic-allow-public-bind"):
        build_argv(["--host", "0.0.0.0"])  # refused before the default model is touched


def test_passive_config_changes_nothing():
    passive = ArcticConfig.passive()
    assert safe_server_args(["--host", "0.0.0.0"], passive) == ["--host", "0.0.0.0"]


@pytest.mark.parametrize("flag", ["max_n", "max_request_bytes", "max_queued_requests", "drain_timeout"])
def test_negative_limits_are_rejected(flag):
    from sglang_arctic.config import ArcticConfigError

    with pytest.raises(ArcticConfigError, match=flag.replace("_", "-")):
        ArcticConfig(**{flag: -1}).validate()


def test_top_logprobs_wider_than_the_vocabulary_is_refused():
    from types import SimpleNamespace

    from sglang_arctic.api.request_checks import check_generate_request

    check_generate_request(SimpleNamespace(top_logprobs_num=5), [1], 100)
    check_generate_request(SimpleNamespace(top_logprobs_num=100), [1], 100)
    check_generate_request(SimpleNamespace(), [1], 100)
    for bad in (101, 2**31, -1):
        with pytest.raises(ValueError, match="top_logprobs_num"):
            check_generate_request(SimpleNamespace(top_logprobs_num=bad), [1], 100)


def test_an_empty_prompt_is_refused_unless_it_carries_other_input():
    from types import SimpleNamespace

    from sglang_arctic.api.request_checks import check_generate_request

    with pytest.raises(ValueError, match="empty"):
        check_generate_request(SimpleNamespace(), [], 100)
    check_generate_request(SimpleNamespace(image_data=["x.png"]), [], 100)


def test_unknown_sampling_parameter_names_are_refused():
    from types import SimpleNamespace

    from sglang_arctic.api.request_checks import check_generate_request

    check_generate_request(SimpleNamespace(sampling_params={"max_new_tokens": 2, "temperature": 0}), [1], 100)
    for bad in ({"": 1}, {"max_new_tokens": 2, "no such": 1}, {"self": 1}):
        with pytest.raises(ValueError, match="Unknown sampling parameter"):
            check_generate_request(SimpleNamespace(sampling_params=bad), [1], 100)
    check_generate_request(SimpleNamespace(session_params={"id": "s"}), [1], 100)
    with pytest.raises(ValueError, match="Unknown session parameter"):
        check_generate_request(SimpleNamespace(session_params={"": 1}), [1], 100)
    with pytest.raises(ValueError, match="must be an object"):
        check_generate_request(SimpleNamespace(session_params=[1]), [1], 100)
    for ids in ([-1], [100], [5, 2**40]):
        with pytest.raises(ValueError, match="input_ids"):
            check_generate_request(SimpleNamespace(), ids, 100)


def test_drain_deadline_aborts_then_forces_then_kills(monkeypatch):
    from sglang_arctic.api.limits import DrainDeadline

    monkeypatch.delenv("SGL_FORCE_SHUTDOWN", raising=False)
    events: list[tuple[str, float]] = []
    draining = {"on": False}
    t0 = time.monotonic()
    deadline = DrainDeadline(0.3, lambda: draining["on"], abort_all=lambda: events.append(("abort", time.monotonic() - t0)),
                             hard_exit=lambda: events.append(("hard exit", time.monotonic() - t0)),
                             poll=0.01, force_after=0.2, hard_exit_after=0.5)
    thread = deadline.start()
    time.sleep(0.2)
    assert events == []  # not draining: nothing happens
    draining["on"] = True
    t0 = time.monotonic()
    thread.join(timeout=5)
    assert [name for name, _ in events] == ["abort", "hard exit"]
    assert 0.3 <= events[0][1] < 0.5 and 0.8 <= events[1][1] < 1.2, events
    # SGLang's loop told to stop waiting in between. Popped directly: a monkeypatch
    # delenv here would be undone at teardown, leaking the flag into every server
    # this test session starts afterwards.
    assert os.environ.pop("SGL_FORCE_SHUTDOWN", None) == "1"
