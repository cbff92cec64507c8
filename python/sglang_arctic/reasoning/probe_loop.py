"""Dynasor-CoT probe-in-the-middle for one request, in the HTTP server process.

The main request runs as a stream inside SGLang's tokenizer manager whatever
the client asked for. Every ``probe_interval`` generated tokens a probe is
sent: prompt + output so far (exactly the first k*interval output tokens) +
the probe suffix, a short sampled side request through the same tokenizer
manager, at most one in flight. Its text up to the first unmatched ``}`` is
the model's current answer. When the last ``certainty_window`` answers agree
(``ProbeHistory.certain``), the main request is aborted and the client gets
the output so far plus a final-answer block, finish_reason "stop".

Probes never reach the client; their token ids go straight to the scheduler,
where ``cache.publish_parent_prefix`` first publishes the main request's
decoded tokens to the radix cache so the probe's prefill reuses them.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, AsyncIterator, Callable, Optional

from sglang_arctic.api.request_checks import MULTIMODAL_FIELDS
from sglang_arctic.reasoning.answers import extract_probe_answer, has_hesitation
from sglang_arctic.reasoning.certainty import ProbeHistory, ProbeRecord
from sglang_arctic.reasoning.settings import DynasorSettings

logger = logging.getLogger(__name__)

# rid of the k-th probe of request R: R + PROBE_RID_MARK + k. SGLang aborts by
# rid prefix, so aborting R also aborts its probes.
PROBE_RID_MARK = "::dynasor-probe-"
DISCONNECT_POLL_S = 1.0
STRUCTURED_KEYS = ("json_schema", "regex", "ebnf", "structural_tag")


# The default suffix opens a display, ``\[ \boxed{``: once the model closes the
# display the answer is complete, and the rest of the probe budget is not spent.
PROBE_STOP = ["\\]"]


def probe_sampling_params(settings: DynasorSettings) -> dict:
    """Sampling parameters of every probe (the live path and the trace replay)."""
    return {
        "max_new_tokens": settings.probe_max_tokens,
        "temperature": settings.probe_temperature,
        "top_p": settings.probe_top_p,
        "stop": list(PROBE_STOP),
    }


def probe_parent_rid(rid: Any) -> Optional[str]:
    """The main request's rid when ``rid`` names a probe, else None."""
    if not isinstance(rid, str):
        return None
    parent, mark, index = rid.rpartition(PROBE_RID_MARK)
    return parent if mark and parent and index.isdigit() else None


def final_answer_block(answer: str, think_end: Optional[str], text: str) -> str:
    """What ends an early-stopped response: closes an open thinking section first."""
    close = f"\n{think_end}" if think_end and think_end not in text else ""
    return f"{close}\n\n**Final Answer**\n\\[ \\boxed{{{answer}}} \\]"


def is_batch(obj) -> bool:
    """Whether a (not yet normalized) ``GenerateReqInput`` holds several prompts."""
    return (isinstance(obj.text, list) or isinstance(obj.sampling_params, list)
            or bool(obj.input_ids and isinstance(obj.input_ids[0], list)))


def ineligible_reason(obj) -> Optional[str]:
    """Why probing cannot apply to this request, or None."""
    if is_batch(obj):
        return "a batch of prompts"
    params = obj.sampling_params or {}
    if (params.get("n") or 1) > 1:
        return "n > 1 (use one request per sample)"
    if obj.return_logprob:
        return "logprobs"
    if any(params.get(k) for k in STRUCTURED_KEYS):
        return "structured output (json_schema / regex / ebnf)"
    if any(getattr(obj, name, None) for name in MULTIMODAL_FIELDS):
        return "multimodal or embedding inputs"
    return None


class ProbeLoop:
    """Drives one main request and its probes; ``run`` yields what the caller
    of ``generate_request`` expects (stream chunks or one final output)."""

    def __init__(self, manager, generate: Callable[..., AsyncIterator[dict]], obj, request,
                 settings: DynasorSettings, think_end: Optional[str]):
        self.manager = manager
        self.generate = generate  # SGLang's own generate_request (unwrapped)
        self.obj = obj
        self.request = request
        self.settings = settings
        self.think_end = think_end
        self.history = ProbeHistory(records=[])
        self.probe_prompt_tokens = 0
        self.probe_prefix_tokens = 0  # the prompt + output part of probe prompts
        self.probe_cached_tokens = 0
        self.failed_probes = 0
        self._probe_task: Optional[asyncio.Task] = None
        self._probe_rid: Optional[str] = None

    # -- the main request ----------------------------------------------------

    async def run(self) -> AsyncIterator[dict]:
        obj = self.obj
        if obj.rid is None:
            obj.rid = uuid.uuid4().hex
        # The request itself runs as a stream (intermediate outputs are what the
        # probes are made of) and reports its prompt ids. The HTTP handler chose
        # its response type before calling, and keeps this object for its abort
        # task, so the object is changed, not copied.
        caller_streams, caller_wants_prompt_ids = bool(obj.stream), bool(obj.return_prompt_token_ids)
        obj.stream = True
        obj.return_prompt_token_ids = True
        incremental = bool(getattr(self.manager, "incremental_streaming_output", False))
        interval = self.settings.probe_interval
        next_probe_at = interval
        ids: list[int] = []
        text = ""
        prompt_ids: list[int] = []
        last_poll = time.monotonic()
        stream = self.generate(self.manager, obj, self.request)
        try:
            async for out in stream:
                if incremental:
                    ids.extend(out.get("output_ids") or [])
                    text += out.get("text") or ""
                else:
                    ids = out.get("output_ids") or []
                    text = out.get("text") or ""
                prompt_ids = out.get("prompt_token_ids") or prompt_ids
                if not caller_wants_prompt_ids:
                    out.pop("prompt_token_ids", None)
                meta = out["meta_info"]
                finished = meta.get("finish_reason") is not None
                self._collect_probe()
                # A non-streaming caller takes the last output without closing
                # this generator: whatever runs must be stopped before it.
                if not finished and self.history.certain(self.settings.certainty_window):
                    self._cancel_probe()
                    await self._stop_main(stream)
                    yield self._early_output(text, ids, meta, incremental)
                    return
                if finished:
                    self._cancel_probe()
                    meta["dynasor"] = self.report(stopped_early=False, generated=len(ids))
                    yield out
                    return
                if self._probe_task is None and len(ids) >= next_probe_at and prompt_ids:
                    position = len(ids) // interval * interval
                    next_probe_at = position + interval
                    self._start_probe(prompt_ids + list(ids[:position]), position)
                if caller_streams:
                    yield out
                elif self.request is not None and time.monotonic() - last_poll > DISCONNECT_POLL_S:
                    last_poll = time.monotonic()
                    if await self.request.is_disconnected():
                        raise ValueError(f"Request is disconnected from the client side. Abort request {obj.rid}")
        finally:
            self._cancel_probe()
            await stream.aclose()  # SGLang aborts the main request if it is still running

    async def _stop_main(self, stream) -> None:
        self.manager.abort_request(self.obj.rid)
        await stream.aclose()

    def _early_output(self, text: str, ids: list[int], meta: dict, incremental: bool) -> dict:
        answer = self.history.records[-1].answer
        block = final_answer_block(answer, self.think_end, text)
        block_ids = self.manager.tokenizer.encode(block, add_special_tokens=False)
        meta = dict(meta)
        meta["finish_reason"] = {"type": "stop", "matched": None}
        meta["completion_tokens"] = len(ids) + len(block_ids)
        meta["dynasor"] = self.report(stopped_early=True, generated=len(ids))
        if incremental:
            return {"text": block, "output_ids": block_ids, "meta_info": meta}
        return {"text": text + block, "output_ids": list(ids) + block_ids, "meta_info": meta}

    def report(self, stopped_early: bool, generated: int) -> dict:
        records = self.history.records
        budget = (self.obj.sampling_params or {}).get("max_new_tokens")
        saved: Optional[int] = 0
        if stopped_early:
            saved = max(0, budget - generated) if isinstance(budget, int) else None
        return {
            "probes": len(records),
            "failed_probes": self.failed_probes,
            "probe_positions": [r.position for r in records],
            "answers": [r.answer for r in records],
            # Probes whose text hesitated ("wait", "hmm", ...): they never count as agreement.
            "hesitant_probes": [i for i, r in enumerate(records) if has_hesitation(r.text)],
            "probe_tokens": self.history.probe_tokens(),
            "probe_prompt_tokens": self.probe_prompt_tokens,
            "probe_prefix_tokens": self.probe_prefix_tokens,
            "probe_cached_tokens": self.probe_cached_tokens,
            "stopped_early": stopped_early,
            "generated_tokens": generated,  # by the model, before any final-answer block
            # The budget the request did not spend (max_new_tokens - generated).
            "tokens_saved": saved,
        }

    # -- probes --------------------------------------------------------------

    def _start_probe(self, input_ids: list[int], position: int) -> None:
        suffix_ids = self.manager.tokenizer.encode(self.settings.probe_suffix, add_special_tokens=False)
        from sglang.srt.managers.io_struct import GenerateReqInput

        self._probe_rid = f"{self.obj.rid}{PROBE_RID_MARK}{len(self.history.records) + self.failed_probes}"
        probe = GenerateReqInput(
            input_ids=input_ids + suffix_ids,
            sampling_params=probe_sampling_params(self.settings),
            rid=self._probe_rid,
            stream=False,
            priority=self.obj.priority,
        )
        self._probe_task = asyncio.create_task(self._run_probe(probe, position, len(input_ids)))

    async def _run_probe(self, probe, position: int, prefix_tokens: int) -> Optional[ProbeRecord]:
        out = None
        async for out in self.generate(self.manager, probe, None):
            pass
        if out is None:
            return None
        meta = out["meta_info"]
        reason = meta.get("finish_reason") or {}
        if reason.get("type") == "abort":
            return None
        self.probe_prompt_tokens += meta.get("prompt_tokens", 0)
        self.probe_prefix_tokens += prefix_tokens
        self.probe_cached_tokens += meta.get("cached_tokens", 0)
        text = out.get("text") or ""
        return ProbeRecord(position=position, text=text, answer=extract_probe_answer(text),
                           tokens=meta.get("completion_tokens", 0))

    def _collect_probe(self) -> None:
        task = self._probe_task
        if task is None or not task.done():
            return
        self._probe_task = None
        try:
            record = task.result()
        except Exception as exc:  # noqa: BLE001 - a failed probe only costs its information
            logger.warning("dynasor probe %s failed: %s", self._probe_rid, exc)
            record = None
        if record is None:
            self.failed_probes += 1
        else:
            self.history.add(record)

    def _cancel_probe(self) -> None:
        task = self._probe_task
        if task is not None and not task.done():
            task.cancel()
            self.manager.abort_request(self._probe_rid)
        self._probe_task = None
