"""The ``dynasor`` and ``certaindex`` request fields: read off the body before
SGLang parses it.

SGLang's request structs do not know them (``/generate`` would fail on them,
the OpenAI models would drop them), so an ASGI middleware takes them out of
the JSON body, validates them (400 with the reason on a malformed object) and
hands the parsed settings to the generation path through context variables:
the route handler, and the tokenizer manager's ``generate_request`` it calls,
run in the middleware's context.
"""

from __future__ import annotations

import contextvars
import json
from typing import Optional

from sglang_arctic.api.responses import Receive, Send, has_header, read_body, replaying, send_error
from sglang_arctic.reasoning.settings import (
    CERTAINDEX_FIELD,
    REQUEST_FIELD,
    CertaindexSettings,
    DynasorDefaults,
    DynasorRequestError,
    DynasorSettings,
    parse_certaindex_object,
    parse_request_object,
)

ROUTES = ("/generate", "/v1/completions", "/v1/chat/completions")
CERTAINDEX_ROUTES = ("/generate",)  # its answer is a list of samples

# What this request asked for. ``UNSET``: the field was absent (server default applies).
UNSET = object()
REQUESTED: contextvars.ContextVar[object] = contextvars.ContextVar("arctic_dynasor", default=UNSET)
CERTAINDEX_REQUESTED: contextvars.ContextVar[Optional[CertaindexSettings]] = contextvars.ContextVar(
    "arctic_certaindex", default=None)


def settings_for_current_request(defaults: DynasorDefaults) -> tuple[Optional[DynasorSettings], bool]:
    """(settings or None, whether the request asked explicitly)."""
    requested = REQUESTED.get()
    if requested is UNSET:
        return (defaults.settings if defaults.enabled else None), False
    return requested, True  # type: ignore[return-value]


def _with_body(scope: dict, body: bytes) -> dict:
    headers = [(k, v) for k, v in scope.get("headers", ()) if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    return {**scope, "headers": headers}


class DynasorFieldMiddleware:
    """Strip and validate ``dynasor`` and ``certaindex`` on the generation
    routes; everything else passes."""

    def __init__(self, app, defaults: DynasorDefaults):
        self.app = app
        self.defaults = defaults

    async def __call__(self, scope, receive: Receive, send: Send):
        if (scope["type"] != "http" or scope.get("method") != "POST"
                or scope.get("path", "") not in ROUTES or has_header(scope, b"content-encoding")):
            await self.app(scope, receive, send)
            return
        messages, body = await read_body(receive)
        parsed = _json_object(body)
        if parsed is None or (REQUEST_FIELD not in parsed and CERTAINDEX_FIELD not in parsed):
            await self.app(scope, replaying(messages, receive), send)
            return
        settings, program, field = UNSET, None, REQUEST_FIELD
        try:
            if REQUEST_FIELD in parsed:
                settings = parse_request_object(parsed.pop(REQUEST_FIELD), self.defaults)
            if CERTAINDEX_FIELD in parsed:
                field = CERTAINDEX_FIELD
                if scope["path"] not in CERTAINDEX_ROUTES:
                    raise DynasorRequestError(f"'{CERTAINDEX_FIELD}' is served on {', '.join(CERTAINDEX_ROUTES)}")
                if parsed.get("stream"):
                    # Checked here: a stream's answer has begun (200) before the handler runs.
                    raise DynasorRequestError(f"'{CERTAINDEX_FIELD}' cannot be combined with streaming")
                program = parse_certaindex_object(parsed.pop(CERTAINDEX_FIELD))
        except DynasorRequestError as exc:
            await send_error(send, 400, str(exc), error_type="BadRequestError", param=field)
            return
        new_body = json.dumps(parsed).encode()
        tokens = (REQUESTED.set(settings), CERTAINDEX_REQUESTED.set(program))
        try:
            await self.app(_with_body(scope, new_body), _replay(new_body, receive), send)
        finally:
            REQUESTED.reset(tokens[0])
            CERTAINDEX_REQUESTED.reset(tokens[1])


def _json_object(body: bytes) -> Optional[dict]:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None  # the route's own validation answers
    return parsed if isinstance(parsed, dict) else None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields ``body`` in one message, then the live stream
    (disconnect notices)."""
    sent = False

    async def replay_receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay_receive
