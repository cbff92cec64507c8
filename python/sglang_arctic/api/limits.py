"""Request limits and the SIGTERM drain, at the HTTP edge.

SGLang bounds neither the request body nor ``n``, keeps accepting new
requests while it drains on SIGTERM (with no deadline), and answers its own
overload 503s (queue full, waiting timeout) without ``Retry-After``. One ASGI
middleware closes those gaps:

* a POST body over ``max_request_bytes`` gets 413 before it is parsed (from
  ``Content-Length`` when given, else while it streams in);
* ``n`` (OpenAI routes) or ``sampling_params.n`` (``/generate``, also per
  entry of a batch) over ``max_n`` gets 400;
* while the server drains, every request except health and metrics gets 503;
* every 503 carries ``Retry-After``.

``DrainDeadline`` enforces the drain deadline: once SGLang's tokenizer
manager starts draining it waits ``drain_timeout`` seconds, then aborts what
still runs so that SGLang's own drain loop ends (with backstops).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

from sglang_arctic.api.responses import (
    BodyTooLarge,
    Receive,
    Send,
    header,
    read_body,
    replaying,
    send_error,
)

logger = logging.getLogger(__name__)

# Routes that stay open while draining: probes and scraping must see the drain.
DRAIN_EXEMPT_PATHS = frozenset({"/health", "/health_generate", "/metrics", "/ready", "/readiness"})
N_ROUTES = frozenset({"/generate", "/v1/completions", "/v1/chat/completions"})


@dataclass(frozen=True)
class RequestLimits:
    max_request_bytes: int  # 0: unbounded
    max_n: int  # 0: unbounded
    retry_after_s: int


class NestedTooDeeply(ValueError):
    pass


def parse_json_object(body: bytes) -> dict | None:
    """The body as a JSON object, or None when it is something else (the route's
    own parser answers those). Raises ``NestedTooDeeply`` past Python's parser depth."""
    try:
        parsed = json.loads(body)
    except RecursionError:
        raise NestedTooDeeply() from None
    except (ValueError, UnicodeDecodeError):
        return None
    return parsed if isinstance(parsed, dict) else None


def requested_n(path: str, parsed: dict) -> int | None:
    """The largest ``n`` a parsed body asks for, or None."""
    if path == "/generate":
        params = parsed.get("sampling_params")
        candidates = params if isinstance(params, list) else [params]
        values = [p.get("n") for p in candidates if isinstance(p, dict)]
    else:
        values = [parsed.get("n"), parsed.get("best_of")]
    numbers = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    return max(numbers) if numbers else None


def body_problem(path: str, body: bytes, max_n: int) -> tuple[str | None, str | None]:
    """What is wrong with a generation request body before SGLang sees it, and
    the field: nesting past the parser, ``n`` over ``max_n`` (> 0), a ``rid``
    that is not a string (or a list of strings for a batch)."""
    try:
        parsed = parse_json_object(body)
    except NestedTooDeeply:
        return "The JSON body is nested too deeply.", None
    if parsed is None:
        return None, None
    n = requested_n(path, parsed)
    if max_n and n is not None and n > max_n:
        return f"n={n} is above this server's limit of {max_n} (--arctic-max-n).", "n"
    rid = parsed.get("rid")
    if path == "/generate" and rid is not None:
        batch = isinstance(parsed.get("text"), list) or (
            isinstance(parsed.get("input_ids"), list) and parsed["input_ids"]
            and isinstance(parsed["input_ids"][0], list))
        ok = isinstance(rid, str) or (batch and isinstance(rid, list) and all(isinstance(r, str) for r in rid))
        if not ok:
            return "rid must be a string (a list of strings for a batch request).", "rid"
    return None, None


def raised_validating_request(exc: BaseException) -> bool:
    """Whether ``exc`` came out of turning the body into the route's request model."""
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if "/pydantic/" in code.co_filename or code.co_name == "request_body_to_args":
            return True
        tb = tb.tb_next
    return False


class RequestLimitsMiddleware:
    def __init__(self, app, limits: RequestLimits, is_draining: Callable[[], bool]):
        self.app = app
        self.limits = limits
        self.is_draining = is_draining
        self.retry_after = (b"retry-after", str(limits.retry_after_s).encode())

    async def __call__(self, scope, receive: Receive, send: Send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path not in DRAIN_EXEMPT_PATHS and self.is_draining():
            await send_error(send, 503, "The server is shutting down; retry on another replica.",
                             error_type="ServiceUnavailableError", headers=[self.retry_after])
            return
        send = self._with_retry_after(send)
        if scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return

        limit = self.limits.max_request_bytes
        declared = header(scope, b"content-length")
        if limit and declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(send, int(declared))
            return
        try:
            messages, body = await read_body(receive, limit)
        except BodyTooLarge as exc:
            await self._too_large(send, exc.args[0])
            return
        if path in N_ROUTES and header(scope, b"content-encoding") is None:
            problem, param = body_problem(path, body, self.limits.max_n)
            if problem:
                await send_error(send, 400, problem, error_type="BadRequestError", param=param)
                return
        await self._run_app(scope, replaying(messages, receive), send)

    async def _run_app(self, scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: dict):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            # SGLang's request models have validators that assume field types
            # (e.g. ``response_format.get``); a wrong type raises inside
            # validation and would be a 500. It is the client's error.
            if started or not raised_validating_request(exc):
                raise
            await send_error(send, 400, f"Invalid request body ({type(exc).__name__}: {exc}).",
                             error_type="BadRequestError")

    async def _too_large(self, send: Send, size: int) -> None:
        await send_error(send, 413, f"The request body ({size} bytes or more) is above this server's "
                         f"limit of {self.limits.max_request_bytes} bytes (--arctic-max-request-bytes).",
                         error_type="RequestTooLargeError")

    def _with_retry_after(self, send: Send) -> Send:
        retry_after = self.retry_after

        async def send_with_retry_after(message: dict):
            if message["type"] == "http.response.start" and message.get("status") == 503:
                headers = list(message.get("headers", ()))
                if not any(k.lower() == b"retry-after" for k, _ in headers):
                    message = {**message, "headers": [*headers, retry_after]}
            await send(message)

        return send_with_retry_after


def tokenizer_manager_draining() -> bool:
    """Whether SGLang's tokenizer manager has started its SIGTERM drain."""
    from sglang.srt.entrypoints import http_server

    state = http_server._global_state  # None until the server has started
    return bool(state is not None and state.tokenizer_manager.gracefully_exit)


class DrainDeadline:
    """Bounds SGLang's drain (which waits for in-flight requests with no limit).

    ``timeout`` seconds after draining starts it aborts whatever still runs:
    those clients get an aborted answer rather than a cut connection, and
    SGLang's drain loop (it polls every 5 s) then finds nothing left and shuts
    down its usual way. Backstops, in case that way is stuck: ``force_after``
    seconds later SGLang's loop is told to stop waiting (``SGL_FORCE_SHUTDOWN``),
    and ``hard_exit_after`` seconds after the deadline the process tree is
    killed and the server exits 1.
    """

    def __init__(self, timeout: float, is_draining: Callable[[], bool],
                 abort_all: Callable[[], None] | None = None, hard_exit: Callable[[], None] | None = None,
                 poll: float = 0.25, force_after: float = 3.0, hard_exit_after: float = 20.0):
        self.timeout = timeout
        self.is_draining = is_draining
        self.abort_all = abort_all or abort_all_in_flight
        self.hard_exit = hard_exit or kill_process_tree_and_exit
        self.poll = poll
        self.force_after = force_after
        self.hard_exit_after = hard_exit_after

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="arctic-drain-deadline", daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        while not self._draining():
            time.sleep(self.poll)
        logger.info("Draining: new requests get 503; in-flight ones have %.0f s to finish.", self.timeout)
        time.sleep(self.timeout)
        logger.error("Drain deadline of %.0f s reached: aborting the requests still running.", self.timeout)
        try:
            self.abort_all()
        except Exception:  # noqa: BLE001 - the backstops below still end the process
            logger.exception("Could not abort the in-flight requests.")
        time.sleep(self.force_after)
        os.environ["SGL_FORCE_SHUTDOWN"] = "1"
        time.sleep(max(0.0, self.hard_exit_after - self.force_after))
        logger.error("Still up %.0f s after the drain deadline: killing the process tree.", self.hard_exit_after)
        self.hard_exit()

    def _draining(self) -> bool:
        try:
            return self.is_draining()
        except Exception:  # noqa: BLE001 - not started yet
            return False


def abort_all_in_flight() -> None:
    """Abort every request, on the tokenizer manager's own event loop (its
    scheduler socket is not thread-safe)."""
    from sglang.srt.entrypoints import http_server

    manager = http_server._global_state.tokenizer_manager
    manager.event_loop.call_soon_threadsafe(lambda: manager.abort_request(abort_all=True))


def kill_process_tree_and_exit() -> None:
    from sglang.srt.utils import kill_process_tree

    with contextlib.suppress(RuntimeError):  # a child not reaped in time: exit anyway
        kill_process_tree(os.getpid(), include_parent=False, wait_timeout=5)
    os._exit(1)
