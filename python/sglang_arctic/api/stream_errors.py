"""A streamed ``/generate`` that fails before its first token answers with a
4xx status, not a 200 whose only event is an error.

SGLang's native streaming route starts its 200 response before it asks the
tokenizer manager for the first output, so a request refused at validation
(an empty prompt, a prompt past the context, an ineligible ``dynasor``) reaches
a streaming client as ``200`` + ``data: {"error": ...}``. Its OpenAI routes
already wait for the first chunk and answer 400; this middleware gives the
native route the same contract: it holds the response start until the first
body chunk, and when that chunk is an error event it sends the error as a JSON
response with the event's code instead. A stream that has begun is never
altered (errors after the first token stay events, as SGLang sends them).
"""

from __future__ import annotations

import json
from typing import Optional

from sglang_arctic.api.responses import Receive, Send, header, send_error

ROUTES = ("/generate",)
ERROR_EVENT_PREFIX = b'data: {"error"'


def error_from_first_event(chunk: bytes) -> Optional[tuple[int, str]]:
    """(status, message) when ``chunk`` is SGLang's stream error event."""
    if not chunk.startswith(ERROR_EVENT_PREFIX):
        return None
    event = chunk[len(b"data: "):].split(b"\n\n", 1)[0]
    try:
        error = json.loads(event)["error"]
        message = str(error.get("message", "Bad request."))
        code = error.get("code")
    except (ValueError, KeyError, TypeError, AttributeError):
        return 400, "Bad request."
    status = code if isinstance(code, int) and 400 <= code < 600 else 400
    return status, message


class StreamErrorStatusMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive: Receive, send: Send):
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") not in ROUTES:
            await self.app(scope, receive, send)
            return
        held: Optional[dict] = None
        state = "waiting"  # -> "passing" (a normal answer) or "replaced" (sent as an error)

        async def first_chunk_send(message: dict) -> None:
            nonlocal held, state
            if state == "passing":
                await send(message)
                return
            if state == "replaced":
                return  # the rest of the refused stream ([DONE]) has no reader
            if message["type"] == "http.response.start":
                content_type = header(message, b"content-type") or b""
                if message.get("status") == 200 and content_type.startswith(b"text/event-stream"):
                    held = message
                    return
                state = "passing"
                await send(message)
                return
            # The start is held: this is the first body chunk.
            chunk = message.get("body", b"")
            if not chunk and message.get("more_body", False):
                return  # an empty keep-alive write: wait for content
            error = error_from_first_event(chunk)
            if error is not None:
                state = "replaced"
                await send_error(send, error[0], error[1], error_type="BadRequestError"
                                 if error[0] < 500 else "InternalServerError")
                return
            state = "passing"
            await send(held)
            await send(message)

        await self.app(scope, receive, first_chunk_send)
