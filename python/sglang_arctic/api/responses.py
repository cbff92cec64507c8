"""Answering an ASGI request ourselves, in the error shape SGLang's OpenAI routes use."""

from __future__ import annotations

import json
from typing import Awaitable, Callable, Iterable

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


async def send_error(send: Send, status: int, message: str, *, error_type: str,
                     param: str | None = None,
                     headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    payload = json.dumps(
        {"object": "error", "type": error_type, "code": status, "param": param, "message": message}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def has_header(scope, name: bytes) -> bool:
    return header(scope, name) is not None


def header(scope, name: bytes) -> bytes | None:
    for k, v in scope.get("headers", ()):
        if k.lower() == name:
            return v
    return None


class BodyTooLarge(Exception):
    pass


async def read_body(receive: Receive, limit: int = 0) -> tuple[list[dict], bytes]:
    """The whole request body and the ASGI messages that carried it (to replay).
    Raises ``BodyTooLarge`` as soon as more than ``limit`` bytes (> 0) arrived."""
    messages, chunks, size = [], [], 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit and size > limit:
            raise BodyTooLarge(size)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return messages, b"".join(chunks)


def replaying(messages: list[dict], receive: Receive) -> Receive:
    """A ``receive`` that first returns the already-read ``messages``."""
    pending = iter(messages)

    async def replay_receive():
        try:
            return next(pending)
        except StopIteration:
            return await receive()

    return replay_receive
