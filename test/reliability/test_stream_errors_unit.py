"""The native stream's error status (api/stream_errors.py) with raw ASGI
messages; on the real server: the ``-stream`` cases of test/server/test_bad_input.py
and the refused ``dynasor`` stream of test/server/test_dynasor.py."""

from __future__ import annotations

import asyncio
import json

from sglang_arctic.api.stream_errors import StreamErrorStatusMiddleware, error_from_first_event

SSE = [(b"content-type", b"text/event-stream; charset=utf-8")]


def _stream_app(chunks: list[bytes], headers=SSE, status: int = 200):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    return app


def _run(app, path: str = "/generate") -> tuple[int, bytes, list[dict]]:
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.disconnect"}

    scope = {"type": "http", "method": "POST", "path": path, "headers": []}
    asyncio.run(StreamErrorStatusMiddleware(app)(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), sent


def _error_event(message: str, code=400) -> bytes:
    return b"data: " + json.dumps({"error": {"message": message, "code": code}}).encode() + b"\n\n"


def test_an_error_before_the_first_token_becomes_its_status():
    status, body, _ = _run(_stream_app([_error_event("The prompt is empty."), b"data: [DONE]\n\n"]))
    assert status == 400
    assert json.loads(body)["message"] == "The prompt is empty."
    status, body, _ = _run(_stream_app([_error_event("queue full", 503)]))
    assert status == 503 and json.loads(body)["type"] == "InternalServerError"


def test_a_stream_that_began_is_passed_unchanged():
    chunks = [b'data: {"text": "a"}\n\n', _error_event("late"), b"data: [DONE]\n\n"]
    status, body, sent = _run(_stream_app(chunks))
    assert status == 200 and body == b"".join(chunks)
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


def test_other_answers_and_routes_pass_untouched():
    assert _run(_stream_app([_error_event("x")], headers=[(b"content-type", b"application/json")]))[0] == 200
    assert _run(_stream_app([_error_event("x")]), path="/v1/completions")[0] == 200
    assert _run(_stream_app([_error_event("x")], status=429))[0] == 429
    status, body, _ = _run(_stream_app([]))  # nothing but the end of the stream
    assert status == 200 and body == b""


def test_error_event_parsing():
    assert error_from_first_event(b'data: {"text": "x"}\n\n') is None
    assert error_from_first_event(_error_event("m", code=None)) == (400, "m")
    assert error_from_first_event(_error_event("m", code=200)) == (400, "m")
    assert error_from_first_event(b'data: {"error" oops\n\n') == (400, "Bad request.")
