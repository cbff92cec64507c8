"""Reject request bodies with top-level fields the API does not define.

SGLang (like pydantic's default) silently ignores unknown top-level fields,
so a typo such as ``max_token`` is served with defaults instead of failing.
OpenAI's own API answers 400; so do we, naming the field. Unknown *sampling*
parameters are already rejected by SGLang itself.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Mapping

from sglang_arctic.api.responses import Receive, Send, has_header, read_body, replaying, send_error


def unknown_fields(body: bytes, known: frozenset[str]) -> list[str]:
    """Top-level keys of a JSON object body that are not in ``known``.

    Anything that is not a JSON object is left to the route's own validation.
    """
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
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


def known_fields_by_route(extra: frozenset[str] = frozenset()) -> dict[str, frozenset[str]]:
    """The fields each checked route accepts; ``extra``: ours, on every route."""
    from sglang.srt.entrypoints.openai.protocol import (
        ChatCompletionRequest,
        CompletionRequest,
    )
    from sglang.srt.managers.io_struct import GenerateReqInput

    return {
        "/generate": frozenset(f.name for f in dataclasses.fields(GenerateReqInput)) | extra,
        "/v1/completions": _pydantic_field_names(CompletionRequest) | extra,
        "/v1/chat/completions": _pydantic_field_names(ChatCompletionRequest) | extra,
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
        if known is None or has_header(scope, b"content-encoding"):
            await self.app(scope, receive, send)
            return

        messages, body = await read_body(receive)
        bad = unknown_fields(body, known)
        if bad:
            await send_error(send, 400, f"Unknown field(s) {bad} in the body of POST {scope['path']}.",
                             error_type="BadRequestError", param=bad[0])
            return
        await self.app(scope, replaying(messages, receive), send)
