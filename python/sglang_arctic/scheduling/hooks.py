"""Length scheduling's whole hook surface in SGLang (scheduler process).

Hook ledger (both registered through SGLang's ``HookRegistry``):

1. ``Scheduler.init_schedule_policy`` (AFTER), when ``--arctic-schedule`` is
   ``ltr`` or ``oracle`` or ``--arctic-schedule-trace`` is set.
   Why: SGLang builds its ``SchedulePolicy`` there; it is the one object that
   orders the waiting queue (``calc_priority``, called once per scheduling
   round before the ``PrefillAdder`` admits requests in queue order).
   How: creates this process's ``SchedulingRuntime`` and, for ltr/oracle,
   swaps ``scheduler.policy`` for a ``RankedSchedulePolicy`` built with the
   same arguments. Everything else in the scheduler is untouched.
2. ``SchedulerOutputStreamer._stream_output_generation`` (BEFORE), with the
   same condition.
   Why: it is the single place every finished request passes exactly once
   (finished, aborted or timed out) on its way to the detokenizer.
   How: drops the request's side-table entry and, with
   ``--arctic-schedule-trace``, appends one ``TraceRecord`` for it.

Composition with SGLang's own policy: ``RankedSchedulePolicy.calc_priority``
first runs SGLang's policy (``--schedule-policy``: prefix matching for
``lpm``, the fast prefix match for the rest), then re-sorts the queue by rank
with a stable sort. So the rank decides the order, SGLang's order breaks
ties (with ``--enable-priority-scheduling`` request priorities come first and
the rank orders requests of equal priority), and each admitted request still
reuses its cached prefix: the ``PrefillAdder`` matches every request against
the radix cache and charges only its uncached tokens. Chunked prefill is
unaffected: a request being chunked is held by the scheduler outside the
waiting queue.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Dict, List, Optional

from sglang.srt.constants import HEALTH_CHECK_RID_PREFIX

from sglang_arctic.config import ArcticConfig
from sglang_arctic.scheduling.features import FEATURE_VERSION, RequestInfo
from sglang_arctic.scheduling.order import RankOrder, StarvationRule
from sglang_arctic.scheduling.trace import TraceRecord, TraceWriter, prompt_digest

if TYPE_CHECKING:  # scorers imports LightGBM: only scheduler processes that rank load it
    from sglang_arctic.scheduling.scorers import RequestScorer, RequestView

logger = logging.getLogger(__name__)

SCHEDULER = "sglang.srt.managers.scheduler.Scheduler"
STREAMER = "sglang.srt.managers.scheduler_components.output_streamer.SchedulerOutputStreamer"
STATS_LOG_INTERVAL_S = 60.0
MAX_VIEWS = 100_000  # bound on the side table if requests ever vanish without finishing


class SchedulingRuntime:
    """Per-scheduler-process state: the request views, the order and the trace writer."""

    def __init__(self, config: ArcticConfig, tokenizer) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.views: Dict[str, RequestView] = {}
        self.writer = TraceWriter(config.schedule_trace) if config.schedule_trace else None
        # perf_counter -> unix time, for SGLang's perf_counter timestamps.
        self._wall_offset = time.time() - time.perf_counter()
        self.order: Optional[RankOrder] = None
        from sglang_arctic.scheduling.scorers import build_scorer

        scorer = build_scorer(config)
        if scorer is not None:
            self.order = self._make_order(scorer)
        self._last_stats_log = time.monotonic()

    def _make_order(self, scorer: RequestScorer) -> RankOrder:
        rule = StarvationRule(
            starvation_steps=self.config.schedule_starvation_steps,
            promotion_steps=self.config.schedule_promotion_steps,
            max_wait_s=self.config.schedule_max_wait,
        )
        return RankOrder(rule, key=lambda req: req.rid, scorer=lambda req: scorer(self.view(req)))

    # -- requests ----------------------------------------------------------------

    def view(self, req) -> RequestView:
        view = self.views.get(req.rid)
        if view is None:
            if len(self.views) >= MAX_VIEWS:
                self.views.clear()
            view = self.views[req.rid] = self._new_view(req)
        return view

    def _new_view(self, req) -> RequestView:
        from sglang_arctic.scheduling.scorers import RequestView

        return RequestView(self._request_info(req), req.origin_input_ids)

    def _request_info(self, req) -> RequestInfo:
        # SGLang's Req keeps only the prompt's token ids: decode them, once per
        # request (decode + featurize + score measured at 0.46 ms in a live server).
        text = self.tokenizer.decode(req.origin_input_ids) if self.tokenizer else ""
        params = req.sampling_params
        return RequestInfo(
            prompt_text=text,
            prompt_tokens=len(req.origin_input_ids),
            max_new_tokens=params.max_new_tokens,
            temperature=float(params.temperature),
            num_stop=len(params.stop_strs or []),
        )

    # -- hooks' work -------------------------------------------------------------

    def sort(self, waiting_queue: List) -> None:
        self.order.sort(waiting_queue)
        now = time.monotonic()
        if now - self._last_stats_log >= STATS_LOG_INTERVAL_S:
            self._last_stats_log = now
            s = self.order.stats
            logger.info(
                "arctic schedule %s: %d rounds (mean %.1f us incl. scoring), %d scored "
                "(mean %.1f us), %d unscorable, %d starvation promotions",
                self.config.schedule, s.rounds, 1e6 * s.sort_seconds / max(s.rounds, 1),
                s.scored, 1e6 * s.score_seconds / max(s.scored + s.unscorable, 1),
                s.unscorable, s.promotions,
            )

    def record_finished(self, req) -> None:
        view = self.views.pop(req.rid, None)
        # Health probes (/health_generate) are the server's traffic, not the deployment's.
        if self.writer is None or str(req.rid).startswith(HEALTH_CHECK_RID_PREFIX):
            return
        view = view or self._new_view(req)
        stats = req.time_stats
        first_token = getattr(stats, "prefill_finished_time", 0.0) or 0.0
        recv = getattr(stats, "scheduler_recv_time", 0.0) or 0.0
        reason = req.finished_reason.to_json().get("type", "unknown") if req.finished_reason else "unknown"
        self.writer.write(TraceRecord(
            rid=str(req.rid),
            prompt_sha=prompt_digest(req.origin_input_ids),
            feature_version=FEATURE_VERSION,
            features=[float(x) for x in view.features()],
            prompt_tokens=len(req.origin_input_ids),
            output_tokens=len(req.output_ids),
            finish_reason=str(reason),
            max_new_tokens=view.info.max_new_tokens,
            arrival_time=recv + self._wall_offset if recv else time.time(),
            first_token_time=first_token + self._wall_offset if first_token else None,
            finish_time=time.time(),
        ))


_runtime: Optional[SchedulingRuntime] = None


def runtime() -> Optional[SchedulingRuntime]:
    return _runtime


def _ranked_policy_class():
    from sglang.srt.managers.schedule_policy import SchedulePolicy

    class RankedSchedulePolicy(SchedulePolicy):
        """SGLang's policy, then a stable re-sort by predicted rank (see the module doc)."""

        def __init__(self, *args, order_by_rank, **kwargs):
            super().__init__(*args, **kwargs)
            self._order_by_rank = order_by_rank

        def calc_priority(self, waiting_queue, running_batch=None, processed_tokens: int = 0):
            super().calc_priority(waiting_queue, running_batch, processed_tokens)
            self._order_by_rank(waiting_queue)
            if self.enable_priority_scheduling:
                # Explicit request priorities outrank predicted lengths; the rank
                # orders requests of equal priority (a stable sort keeps it).
                waiting_queue.sort(key=lambda r: r.priority * self.priority_sign)

    return RankedSchedulePolicy


def _after_init_schedule_policy(result, scheduler, *args, **kwargs):
    global _runtime
    from sglang_arctic.config import load_config

    _runtime = SchedulingRuntime(load_config(), getattr(scheduler, "tokenizer", None))
    if _runtime.order is not None:
        original = scheduler.policy
        scheduler.policy = _ranked_policy_class()(
            scheduler.schedule_policy,
            scheduler.tree_cache,
            scheduler.enable_hierarchical_cache,
            scheduler.enable_priority_scheduling,
            scheduler.schedule_low_priority_values_first,
            order_by_rank=_runtime.sort,
        )
        logger.info("arctic schedule %s replaces %s's order", _runtime.config.schedule,
                    type(original).__name__)
    return result


def _before_stream_output_generation(streamer, reqs, *args, **kwargs):
    state = _runtime
    if state is None:
        return None
    skip_req = kwargs.get("skip_req", args[1] if len(args) > 1 else None)
    for req in reqs:
        if req is not skip_req and req.finished() and not req.finished_output:
            try:
                state.record_finished(req)
            except Exception:  # noqa: BLE001 - a trace problem must never fail serving
                logger.exception("arctic schedule trace: could not record request %s", req.rid)
    return None


_registered = False


def register_scheduling_hooks(config: ArcticConfig) -> None:
    """Register both hooks when this config uses them (idempotent)."""
    global _registered
    if _registered or (config.schedule == "off" and not config.schedule_trace):
        return
    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    HookRegistry.register(
        SCHEDULER + ".init_schedule_policy", _after_init_schedule_policy, HookType.AFTER
    )
    # Also without a trace: finishing is when a request's view is dropped.
    HookRegistry.register(
        STREAMER + "._stream_output_generation", _before_stream_output_generation, HookType.BEFORE
    )
    _registered = True
