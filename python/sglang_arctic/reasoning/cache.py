"""Probes reuse the main request's KV: publish its decoded tokens to the radix cache.

SGLang 0.5.23 inserts a request's tokens into the radix tree when a prefill
chunk completes (``checkpoint_kv_cache``) and when the request is released;
tokens decoded in between stay private to the running request. A probe's
prompt is the main request's prompt + output so far, so without help its
prefill would recompute everything after the prompt. When a probe arrives at
the scheduler we therefore checkpoint its running parent with the same tree
operation chunked prefill uses (``tree_cache.checkpoint``, which inserts the
committed KV and moves the parent's lock onto the new node); the probe's
prefix match then finds it.
"""

from __future__ import annotations

import logging

from sglang_arctic.reasoning.probe_loop import probe_parent_rid

logger = logging.getLogger(__name__)


def publish_parent_prefix(scheduler, probe_rid: str) -> int:
    """Checkpoint the running parent of ``probe_rid``; the tokens now in the tree (0: none)."""
    parent_rid = probe_parent_rid(probe_rid)
    tree = scheduler.tree_cache
    if parent_rid is None or tree is None or not tree.supports_prefix_sharing():
        return 0
    for req in scheduler.running_batch.reqs:
        if req.rid != parent_rid:
            continue
        if req.finished() or not req.kv.holds_kv or req.skip_radix_cache_insert:
            return 0
        up_to = req.owned_kv_len()
        if up_to <= req.kv.cache_protected_len:
            return up_to
        # The fill-id array lags output_ids until the next prepare_for_decode.
        req.refresh_fill_ids()
        tree.checkpoint(req, up_to=up_to)
        return up_to
    return 0
