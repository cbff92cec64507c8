"""HTTP-surface hardening that SGLang does not do itself.

Hook surface (all in the HTTP server process, by ``install``): ASGI
middlewares added to ``sglang.srt.entrypoints.http_server.app`` (request
limits and the drain, outermost; unknown-field rejection; the ``dynasor``
request field of ``reasoning/``; innermost, a 4xx status for a native stream
refused before its first token, ``stream_errors.py``), the drain
deadline thread, and one check before SGLang's own request validation
(``request_checks.py``). Launcher-side defaults are ``server_defaults.py``, applied by
``sglang_arctic.launch_server``.
"""

from __future__ import annotations

from sglang_arctic.config import ArcticConfig


def install(config: ArcticConfig) -> None:
    limits_on = bool(config.max_request_bytes or config.max_n or config.drain_timeout)
    if not (config.reject_unknown_fields or limits_on or config.dynasor_requests):
        return  # the passive config: vanilla SGLang
    from sglang.srt.entrypoints import http_server

    from sglang_arctic.api.limits import (
        DrainDeadline,
        RequestLimits,
        RequestLimitsMiddleware,
        tokenizer_manager_draining,
    )
    from sglang_arctic.api.stream_errors import StreamErrorStatusMiddleware
    from sglang_arctic.api.strict_fields import StrictFieldsMiddleware, known_fields_by_route

    from sglang_arctic.api import request_checks

    app = http_server.app
    if getattr(app.state, "arctic_api_installed", False):
        return
    app.state.arctic_api_installed = True
    request_checks.install()
    # Starlette runs the middleware added last first: limits, then the unknown
    # field check, then the ``dynasor``/``certaindex`` fields leave the body;
    # the stream error status sits next to SGLang's route.
    from sglang_arctic.reasoning.hooks import install_request_field
    from sglang_arctic.reasoning.settings import CERTAINDEX_FIELD, REQUEST_FIELD

    app.add_middleware(StreamErrorStatusMiddleware)
    install_request_field(app, config)
    if config.reject_unknown_fields:
        extra = frozenset([REQUEST_FIELD, CERTAINDEX_FIELD]) if config.dynasor_requests else frozenset()
        app.add_middleware(StrictFieldsMiddleware, known_by_route=known_fields_by_route(extra))
    if limits_on:
        limits = RequestLimits(config.max_request_bytes, config.max_n, config.retry_after)
        app.add_middleware(RequestLimitsMiddleware, limits=limits, is_draining=tokenizer_manager_draining)
    if config.drain_timeout:
        DrainDeadline(config.drain_timeout, tokenizer_manager_draining).start()
