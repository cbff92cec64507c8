"""Dynasor's whole hook surface in SGLang.

Hook ledger:

1. ASGI middleware ``DynasorFieldMiddleware`` on SGLang's FastAPI app (HTTP
   server process), when ``--arctic-dynasor-requests`` (the launcher's
   default). Why: SGLang's request structs do not know the ``dynasor`` field.
   How: takes it out of the body of ``/generate``, ``/v1/completions`` and
   ``/v1/chat/completions``, answers 400 when malformed, and passes the parsed
   settings on in a context variable.
2. ``TokenizerManager.generate_request`` (AROUND, ``HookRegistry``), HTTP
   server process, when requests may ask for Dynasor or ``--arctic-dynasor``
   probes by default. Why: every endpoint (native and OpenAI) turns its body
   into a ``GenerateReqInput`` and calls it; it is the narrowest point that
   sees the tokenized prompt, the output ids as they are produced, and can
   issue side requests. How: a request with Dynasor settings runs through
   ``ProbeLoop``, one with a ``certaindex`` object through
   ``run_self_consistency``; every other request passes through untouched.
3. ``Scheduler._add_request_to_queue`` (BEFORE), scheduler process, same
   condition. Why: it is where a probe enters the waiting queue, before its
   prefix is matched. How: ``publish_parent_prefix`` checkpoints the probe's
   running parent into the radix tree. Other requests: a string check.
4. ``OpenAIServingChat._build_chat_response`` and
   ``OpenAIServingCompletion._build_completion_response`` (AFTER), HTTP server
   process, same condition. Why: the OpenAI response models have no place for
   ``meta_info``; their ``metadata`` object is SGLang's free-form one. How: a
   probed request's report goes to ``metadata["dynasor"]`` (non-streaming
   answers; a stream's report is in native ``/generate``'s ``meta_info``).
"""

from __future__ import annotations

import logging
from typing import Optional

from sglang.srt.constants import HEALTH_CHECK_RID_PREFIX

from sglang_arctic.config import ArcticConfig
from sglang_arctic.reasoning.cache import publish_parent_prefix
from sglang_arctic.reasoning.probe_loop import PROBE_RID_MARK, ProbeLoop, ineligible_reason
from sglang_arctic.reasoning.settings import DynasorDefaults

logger = logging.getLogger(__name__)

TOKENIZER_MANAGER = "sglang.srt.managers.tokenizer_manager.TokenizerManager"
SCHEDULER = "sglang.srt.managers.scheduler.Scheduler"
OPENAI_RESPONSE_BUILDERS = (
    "sglang.srt.entrypoints.openai.serving_chat.OpenAIServingChat._build_chat_response",
    "sglang.srt.entrypoints.openai.serving_completions.OpenAIServingCompletion._build_completion_response",
)

_defaults: Optional[DynasorDefaults] = None
_think_end_cache: dict[str, Optional[str]] = {}


def dynasor_active(config: ArcticConfig) -> bool:
    return config.dynasor_requests or config.dynasor


def _think_end(manager) -> Optional[str]:
    """The think-end marker of the server's reasoning parser, if it has one."""
    name = getattr(manager.server_args, "reasoning_parser", None)
    if not name:
        return None
    if name not in _think_end_cache:
        try:
            from sglang.srt.parser.reasoning_parser import ReasoningParser

            _think_end_cache[name] = ReasoningParser(model_type=name).detector.think_end_token
        except Exception:  # noqa: BLE001 - an exotic parser: no thinking section to close
            logger.warning("dynasor: no think-end token for reasoning parser %r", name)
            _think_end_cache[name] = None
    return _think_end_cache[name]


async def _refuse(message: str):
    raise ValueError(message)
    yield  # an async generator, as generate_request's callers expect


def _around_generate_request(original, manager, obj, request=None):
    from sglang.srt.managers.io_struct import GenerateReqInput

    from sglang_arctic.reasoning.request_field import CERTAINDEX_REQUESTED, settings_for_current_request

    settings, explicit = settings_for_current_request(_defaults)
    program = CERTAINDEX_REQUESTED.get()
    if program is not None and isinstance(obj, GenerateReqInput):
        return _self_consistency(original, manager, obj, request, program, explicit and settings is not None)
    rid = getattr(obj, "rid", None)
    if (settings is None or not isinstance(obj, GenerateReqInput)
            or (isinstance(rid, str) and (rid.startswith(HEALTH_CHECK_RID_PREFIX) or PROBE_RID_MARK in rid))):
        return original(manager, obj, request)
    reason = ineligible_reason(obj)
    if reason is not None:
        if explicit:
            return _refuse(f"'dynasor' cannot be combined with {reason}.")
        return original(manager, obj, request)
    return ProbeLoop(manager, original, obj, request, settings, _think_end(manager)).run()


def _self_consistency(original, manager, obj, request, program, with_dynasor: bool):
    from sglang_arctic.reasoning import self_consistency

    if with_dynasor:
        return _refuse("'certaindex' and 'dynasor' cannot be combined in one request.")
    reason = self_consistency.ineligible_reason(obj)
    if reason is not None:
        return _refuse(f"'certaindex' cannot be combined with {reason}.")
    # Each wave goes through SGLang's own path: no Dynasor probes on samples.
    return self_consistency.run_self_consistency(manager, original, obj, request, program)


def _before_add_request_to_queue(scheduler, req, is_retracted: bool = False):
    if not is_retracted and isinstance(req.rid, str) and PROBE_RID_MARK in req.rid:
        try:
            publish_parent_prefix(scheduler, req.rid)
        except Exception:  # noqa: BLE001 - the probe still runs, recomputing its prefix
            logger.exception("dynasor: could not publish the parent prefix of %s", req.rid)
    return None


def _after_build_openai_response(response, serving, request, ret, created):
    reports = [r["meta_info"]["dynasor"] for r in ret
               if isinstance(r, dict) and "dynasor" in r.get("meta_info", {})]
    if not reports or not hasattr(response, "metadata"):
        return None  # an error response, or nothing was probed
    # Probing takes one prompt and one choice (batches and n > 1 are never probed).
    response.metadata = {**(response.metadata or {}), "dynasor": reports[0] if len(reports) == 1 else reports}
    return response


def install_request_field(app, config: ArcticConfig) -> None:
    """Hook 1 (HTTP server process): call before the outer middlewares are added."""
    if not config.dynasor_requests:
        return
    from sglang_arctic.reasoning.request_field import DynasorFieldMiddleware

    app.add_middleware(DynasorFieldMiddleware, defaults=DynasorDefaults.from_config(config))


_registered = False


def register_reasoning_hooks(config: ArcticConfig) -> None:
    """Hooks 2 and 3 (idempotent)."""
    global _registered, _defaults
    if _registered or not dynasor_active(config):
        return
    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    _defaults = DynasorDefaults.from_config(config)
    HookRegistry.register(TOKENIZER_MANAGER + ".generate_request", _around_generate_request,
                          HookType.AROUND)
    HookRegistry.register(SCHEDULER + "._add_request_to_queue", _before_add_request_to_queue,
                          HookType.BEFORE)
    for builder in OPENAI_RESPONSE_BUILDERS:
        HookRegistry.register(builder, _after_build_openai_response, HookType.AFTER)
    _registered = True
