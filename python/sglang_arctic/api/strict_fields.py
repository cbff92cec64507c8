"""Reject request bodies with top-level fields the API does not define.

SGLang (like pydantic's default) silently ignores unknown top-level fields,
so a typo such as ``max_token`` is served with defaults instead of failing.
OpenAI's own API answers 400; so do we, naming the field. Unknown *sampling*
parameters are already rejected by SGLang itself.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Awaitable, Callable, Iterable, Mapping

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


def unknown_fields(body: bytes, known: frozenset[str]) -> list[str]:
    """Top-level keys of a JSON object body that are not in ``known``.

    Anything that is not a JSON object is left to the route's own validation.
    """
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []
    if not isinstance(parsed, dict):
        return []
    return sorted(k for k in parsed if k not in known)


def _pydantic_field_names(model) -> frozenset[str]:
    names = set()
    for name, info in model.model_fields.items():
        names.add(name)
        if info.alias:
            names.add(info.alias)
    return frozenset(names)


def known_fields_by_route() -> dict[str, frozenset[str]]:
    from sglang.srt.entrypoints.openai.protocol import (
        ChatCompletionRequest,
        CompletionRequest,
    )
    from sglang.srt.managers.io_struct import GenerateReqInput

    return {
        "/generate": frozenset(f.name for f in dataclasses.fields(GenerateReqInput)),
        "/v1/completions": _pydantic_field_names(CompletionRequest),
        "/v1/chat/completions": _pydantic_field_names(ChatCompletionRequest),
    }


class StrictFieldsMiddleware:
    """ASGI middleware: buffer the body of a checked POST, answer 400 on unknown
    fields, otherwise replay the body unchanged to the app."""

    def __init__(self, app, known_by_route: Mapping[str, frozenset[str]]):
        self.app = app
        self.known_by_route = dict(known_by_route)

    async def __call__(self, scope, receive: Receive, send: Send):
        known = None
        if scope["type"] == "http" and scope.get("method") == "POST":
            known = self.known_by_route.get(scope.get("path", ""))
        if known is None or _has_header(scope, b"content-encoding"):
            await self.app(scope, receive, send)
            return

        messages, body = await _read_body(receive)
        bad = unknown_fields(body, known)
        if bad:
            await _send_400(send, bad, scope["path"])
            return

        replay = iter(messages)

        async def replay_receive():
            try:
                return next(replay)
            except StopIteration:
                return await receive()

        await self.app(scope, replay_receive, send)


def _has_header(scope, name: bytes) -> bool:
    return any(k.lower() == name for k, _ in scope.get("headers", ()))


async def _read_body(receive: Receive) -> tuple[list[dict], bytes]:
    messages, chunks = [], []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return messages, b"".join(chunks)


async def _send_400(send: Send, fields: Iterable[str], path: str) -> None:
    fields = list(fields)
    payload = json.dumps(
        {
            "object": "error",
            "type": "BadRequestError",
            "code": 400,
            "param": fields[0],
            "message": f"Unknown field(s) {fields} in the body of POST {path}.",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def install() -> None:
    """Add the middleware to SGLang's FastAPI app (HTTP server process only)."""
    from sglang.srt.entrypoints import http_server

    if getattr(http_server.app.state, "arctic_strict_fields", False):
        return
    http_server.app.add_middleware(StrictFieldsMiddleware, known_by_route=known_fields_by_route())
    http_server.app.state.arctic_strict_fields = True
