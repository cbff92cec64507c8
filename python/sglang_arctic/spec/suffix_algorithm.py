"""``--speculative-algorithm ARCTIC_SUFFIX``: SuffixDecoding inside SGLang.

SGLang's NGRAM worker already does everything around the draft source: it
turns a (tokens, tree mask) draft per request into a TARGET_VERIFY batch,
verifies it with SGLang's tree-verify path (greedy and sampled), and commits
the accepted tokens. ARCTIC_SUFFIX is that worker with a different draft
source, so the algorithm registers as NGRAM-like (``is_ngram()``) and the
worker overrides the draft-source methods and wraps one step:

* ``forward_batch_generation`` (decode steps): bring each request's suffix
  tree up to date with the tokens it has committed, ask
  ``SuffixCache.speculate`` for its draft, let ``VerifyWidthPolicy`` choose
  this step's verify width from the drafts' estimated acceptance and the
  measured cost per verified token (``spec/verify_width.py``), run the base
  step at that width, then feed the policy what was accepted and how long
  the step took;
* ``_prepare_draft_tokens``: pack the step's drafts into NGRAM's layout at
  that width;
* ``_update_ngram_corpus``: nothing to do (the trees are updated from the
  committed tokens at the next draft, which sees them all).

Requests leaving the decode batch are reported by the base worker through
``erase_match_state``; our adapter stops their per-request tree there.

Draft layout (SGLang's NGRAM convention, ``draft_token_num = n``): per request
``n`` tokens, slot 0 the last committed token (the verify root), then the draft
tokens in an order where a parent precedes its children, then padding (token
0, child of the root); the ``n x n`` mask row ``i`` marks slot ``i`` and its
ancestors. Padding slots only ever get accepted when the target itself picks
token 0 there, which is the target's own greedy choice, so they cost compute,
never correctness.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np

from sglang_arctic.config import ArcticConfig, load_config
from sglang_arctic.spec.verify_width import VerifyWidthPolicy

logger = logging.getLogger(__name__)

ALGORITHM_NAME = "ARCTIC_SUFFIX"
# NGRAM's batch default: the worker preallocates draft buffers per running request.
DEFAULT_MAX_RUNNING_REQUESTS = 48
# How often the worker logs its verify steps (width, accepted, step time, cost fit).
WIDTH_LOG_INTERVAL_S = 30.0


@dataclass(frozen=True)
class SuffixSpecParams:
    """The SuffixDecoding knobs the worker uses (from ``ArcticConfig``)."""

    max_depth: int
    max_cached_requests: int
    max_spec_factor: float
    max_spec_offset: float
    min_token_prob: float
    tree_spec: bool
    max_batch_size: int
    adaptive_width: bool

    @classmethod
    def from_config(cls, config: ArcticConfig) -> "SuffixSpecParams":
        return cls(
            max_depth=config.suffix_max_depth,
            max_cached_requests=config.suffix_max_cached_requests,
            max_spec_factor=config.suffix_max_spec_factor,
            max_spec_offset=config.suffix_max_spec_offset,
            min_token_prob=config.suffix_min_token_prob,
            tree_spec=config.suffix_tree_spec,
            max_batch_size=config.suffix_max_batch_size,
            adaptive_width=config.suffix_adaptive_width,
        )


def default_verify_width(config: ArcticConfig, device: str) -> int:
    """Root plus draft budget, when --speculative-num-draft-tokens is not given.

    The maximum: the adaptive width (``VerifyWidthPolicy``) picks each step's
    width up to it. On a CPU, where every verified position costs compute, a
    fixed width 17 lost to no speculation on chat at 8 streams (0.92x) while
    the adaptive width up to 17 stayed ahead on every workload (docs/benchmarks.md
    section 2), so both devices default to 16 draft tokens; the CPU cap stays
    separate for running without the adaptive width."""
    spec_tokens = config.suffix_max_spec_tokens_cpu if device == "cpu" else config.suffix_max_spec_tokens
    return spec_tokens + 1


def pack_draft(
    last_token: int, token_ids: Sequence[int], parents: Sequence[int], width: int
) -> tuple[np.ndarray, np.ndarray]:
    """One request's draft in NGRAM's layout: ``width`` tokens and the
    ``width x width`` ancestor-or-self mask (see the module docstring)."""
    k = len(token_ids)
    if k > width - 1:
        raise ValueError(f"draft of {k} tokens does not fit verify width {width}")
    tokens = np.zeros(width, dtype=np.int64)
    parent_slot = np.zeros(width, dtype=np.int64)  # padding hangs off the root
    tokens[0] = last_token
    tokens[1 : k + 1] = token_ids
    parent_slot[1 : k + 1] = np.asarray(parents, dtype=np.int64) + 1
    mask = np.zeros((width, width), dtype=bool)
    mask[0, 0] = True
    for i in range(1, width):
        p = parent_slot[i]
        if p >= i:
            raise ValueError(f"draft token {i - 1} has parent {p - 1}, not an earlier token")
        mask[i] = mask[p]
        mask[i, i] = True
    return tokens, mask


class SuffixDraftSource:
    """The per-request bookkeeping between SGLang's requests and ``SuffixCache``.

    Also stands in for NGRAM's corpus object where the base worker calls it
    (``erase_match_state``, ``reset``, ``synchronize``).
    """

    def __init__(self, params: SuffixSpecParams, width: int, max_context_len: int):
        from sglang_arctic.spec.suffix_tree import SuffixCache

        self.params = params
        self.width = width
        self.max_context_len = max_context_len
        self.cache = SuffixCache(
            max_depth=params.max_depth, max_cached_requests=params.max_cached_requests
        )
        # Output tokens of each active request already in its tree.
        self._tokens_in_tree: dict[Hashable, int] = {}

    # -- the NGRAM-corpus surface the base worker uses --------------------

    def erase_match_state(self, req_ids: Sequence[Hashable]) -> None:
        for rid in req_ids:
            if self._tokens_in_tree.pop(rid, None) is not None:
                self.cache.stop_request(rid)

    def reset(self) -> None:
        # A fresh cache drops every tree; nothing to stop one by one.
        self._tokens_in_tree.clear()
        self.cache = type(self.cache)(
            max_depth=self.params.max_depth,
            max_cached_requests=self.params.max_cached_requests,
        )

    def synchronize(self) -> None:
        pass

    # -- drafting ----------------------------------------------------------

    def _sync_request(self, rid: Hashable, prompt: Sequence[int], output: Sequence[int]) -> None:
        seen = self._tokens_in_tree.get(rid)
        if seen is None:
            self.cache.start_request(rid, list(prompt))
            seen = 0
        if len(output) > seen:
            self.cache.add_active_response(rid, list(output[seen:]))
        self._tokens_in_tree[rid] = len(output)

    def propose(self, rid: Hashable, prompt: Sequence[int], output: Sequence[int],
                may_draft: bool) -> ProposedDraft:
        """Bring the request's tree up to date and draft after its last token."""
        self._sync_request(rid, prompt, output)
        depth = self.params.max_depth
        tail = list(output[-depth:])
        if len(tail) < depth:
            tail = list(prompt[max(0, len(prompt) - (depth - len(tail))):]) + tail
        # Never propose past the context length: verify writes `width` KV slots
        # and every accepted token must still fit the model's context.
        room = self.max_context_len - (len(prompt) + len(output)) - 1
        budget = min(self.width - 1, max(room, 0))
        if not (may_draft and budget > 0 and len(tail) > 1):
            return ProposedDraft(tail[-1], [], [], [])
        d = self.cache.speculate(
            rid, tail,
            max_spec_tokens=budget,
            factor=self.params.max_spec_factor,
            offset=self.params.max_spec_offset,
            min_token_prob=self.params.min_token_prob,
            use_tree=self.params.tree_spec,
        )
        return ProposedDraft(tail[-1], d.token_ids, d.parents, d.probs)

    def draft(self, rid: Hashable, prompt: Sequence[int], output: Sequence[int],
              may_draft: bool) -> tuple[np.ndarray, np.ndarray]:
        """``propose`` packed at the full width."""
        return self.propose(rid, prompt, output, may_draft).pack(self.width)


@dataclass(frozen=True)
class ProposedDraft:
    """One request's draft before the step's width is known."""

    last_token: int
    token_ids: list[int]
    parents: list[int]
    probs: list[float]

    def pack(self, width: int) -> tuple[np.ndarray, np.ndarray]:
        """NGRAM's layout at ``width``; drafts are ordered parents first, so
        keeping the first ``width - 1`` tokens keeps a valid (sub)tree."""
        k = min(len(self.token_ids), width - 1)
        return pack_draft(self.last_token, self.token_ids[:k], self.parents[:k], width)


# ---------------------------------------------------------------------------
# SGLang side: the worker and the algorithm registration
# ---------------------------------------------------------------------------


def _worker_class():
    """Built lazily: importing SGLang's worker pulls in its model-side code."""
    from sglang.srt.speculative.ngram_worker import NGRAMWorker

    class SuffixDecodingWorker(NGRAMWorker):
        """NGRAM's worker with suffix trees as the draft source and a verify
        width chosen per step (``VerifyWidthPolicy``).

        The base worker reads the width from ``self.draft_token_num`` (and
        ``speculative_num_draft_tokens``) during a step and slices its
        preallocated buffers per batch size; a step narrower than the maximum
        sets both for its duration and re-slices those buffers. Its result
        carries the width as its output stride, which is what SGLang's result
        processor reads; the next-draft input is padded back to the maximum
        so that batches of different steps still merge and filter.
        """

        def __init__(self, server_args, gpu_id, nccl_port, target_worker):
            super().__init__(server_args, gpu_id, nccl_port, target_worker)
            params = SuffixSpecParams.from_config(load_config())
            self.max_verify_width = self.draft_token_num
            self.ngram_corpus = SuffixDraftSource(
                params,
                width=self.max_verify_width,
                max_context_len=self.model_runner.model_config.context_len,
            )
            self.width_policy = VerifyWidthPolicy(
                max_width=self.max_verify_width, adaptive=params.adaptive_width
            )
            self._step_drafts: list[ProposedDraft] | None = None
            self._last_verify_end: float | None = None
            self._last_summary = time.perf_counter()
            logger.info("ARCTIC_SUFFIX speculation: %s, verify width up to %d",
                        params, self.max_verify_width)

        def forward_batch_generation(self, batch, on_publish=None, pp_proxy_tensors=None):
            forward = super().forward_batch_generation
            if not batch.forward_mode.is_decode():
                self._last_verify_end = None
                return forward(batch, on_publish=on_publish, pp_proxy_tensors=pp_proxy_tensors)
            if self.enable_overlap:
                raise RuntimeError(
                    f"{ALGORITHM_NAME} runs without overlap scheduling; "
                    "its server-args hook should have disabled it"
                )
            source: SuffixDraftSource = self.ngram_corpus
            limit = source.params.max_batch_size
            drafts = [
                source.propose(req.rid, req.origin_input_ids_unpadded, req.output_ids,
                               may_draft=i < limit)
                for i, req in enumerate(batch.reqs)
            ]
            probs = [d.probs for d in drafts]
            width = self.width_policy.choose(probs)
            self._use_verify_width(len(batch.reqs), width)
            self._step_drafts = drafts
            try:
                result = forward(batch, on_publish=on_publish, pp_proxy_tensors=pp_proxy_tensors)
            finally:
                self._step_drafts = None
                self.draft_token_num = self.speculative_num_draft_tokens = self.max_verify_width
            accepted = int(result.accept_lens.sum().item()) - len(batch.reqs)
            now = time.perf_counter()
            # Verify step to verify step: the scheduler's own work per step is
            # part of what a wider step must pay for.
            seconds = None if self._last_verify_end is None else now - self._last_verify_end
            self.width_policy.observe(probs, width, accepted, seconds)
            self._last_verify_end = now
            if now - self._last_summary >= WIDTH_LOG_INTERVAL_S:
                self._last_summary = now
                logger.info("ARCTIC_SUFFIX: %s", self.width_policy.summary())
            self._pad_next_draft_input(result.next_draft_input, len(batch.reqs), width)
            return result

        def _use_verify_width(self, bs: int, width: int) -> None:
            self.draft_token_num = self.speculative_num_draft_tokens = width
            self.draft_tokens_batch[bs] = self.draft_tokens[: bs * width]
            self.positions_batch[bs] = self.positions[: bs * width]
            self.tree_mask_batch[bs] = self.tree_mask[: bs * width * width]
            for name in ("retrieve_indexes", "retrieve_next_token", "retrieve_next_sibling"):
                flat = getattr(self, name).view(-1)
                getattr(self, name + "_batch")[bs] = flat[: bs * width].view(bs, width)

        def _pad_next_draft_input(self, spec_input, bs: int, width: int) -> None:
            if width == self.max_verify_width or spec_input.accept_tokens is None:
                return
            narrow = spec_input.accept_tokens.view(bs, width)
            padded = narrow.new_zeros((bs, self.max_verify_width))
            padded[:, :width] = narrow
            spec_input.accept_tokens = padded.flatten()
            spec_input.draft_token_num = self.max_verify_width
            spec_input.num_tokens_per_req = self.max_verify_width
            spec_input.num_tokens_for_logprob_per_req = self.max_verify_width

        def _prepare_draft_tokens(self, batch):
            width = self.draft_token_num
            packed = [d.pack(width) for d in self._step_drafts]
            return (np.concatenate([t for t, _ in packed]),
                    np.concatenate([m.reshape(-1) for _, m in packed]))

        def _update_ngram_corpus(self, batch):
            # The trees catch up from req.output_ids at the next draft.
            pass

        def add_external_corpus(self, corpus_id, token_chunks):
            raise ValueError(f"{ALGORITHM_NAME} does not use external n-gram corpora")

        def list_external_corpora(self):
            return {}

    return SuffixDecodingWorker


def _spec_class():
    from sglang.srt.speculative.spec_registry import CustomSpecAlgo

    class SuffixSpecAlgo(CustomSpecAlgo):
        """Dispatches like NGRAM inside SGLang (no draft model, no draft KV,
        tree verify with a custom mask)."""

        def is_ngram(self) -> bool:
            return True

        def has_draft_kv(self) -> bool:
            return False

        # SGLang 0.5.23's scheduler calls these on every algorithm, but
        # CustomSpecAlgo does not define them (its conformance check only
        # covers is_*/supports_*); test_suffix_algorithm checks that none is
        # missing. NGRAM's answers:
        def carries_draft_hidden_states(self) -> bool:
            return False

        def need_topk(self) -> bool:
            return False

        def get_platform_worker_cls(self):
            return None

        def create_future_map(self, device, req_to_token_pool, needs_cpu_seq_lens=True,
                              needs_confidence_relay=False):
            from sglang.srt.managers.overlap_utils import FutureMap

            return FutureMap(device, self, req_to_token_pool, needs_cpu_seq_lens,
                             needs_confidence_relay)

        def handle_server_args(self, server_args) -> None:
            if server_args.device not in ("cuda", "cpu"):
                raise ValueError(
                    f"{ALGORITHM_NAME} speculation runs on cuda or cpu, not {server_args.device!r}"
                )
            # The worker reads each request's committed tokens when drafting,
            # which overlap scheduling would leave one step behind.
            server_args.disable_overlap_schedule = True
            server_args.enable_mixed_chunk = False
            if server_args.max_running_requests is None:
                server_args.max_running_requests = DEFAULT_MAX_RUNNING_REQUESTS
            if server_args.speculative_num_draft_tokens is None:
                server_args.speculative_num_draft_tokens = default_verify_width(
                    load_config(), server_args.device
                )
            if server_args.speculative_num_draft_tokens < 2:
                raise ValueError(
                    f"{ALGORITHM_NAME} needs --speculative-num-draft-tokens >= 2 "
                    f"(the root and at least one draft token), got "
                    f"{server_args.speculative_num_draft_tokens}"
                )
            # Verify treats the drafts as a tree (custom mask), as for NGRAM.
            server_args.speculative_eagle_topk = server_args.speculative_ngram_max_bfs_breadth
            if server_args.speculative_num_steps is None:
                server_args.speculative_num_steps = max(
                    1, server_args.speculative_num_draft_tokens // server_args.speculative_eagle_topk
                )

    return SuffixSpecAlgo


def register_suffix_algorithm() -> None:
    """Register ARCTIC_SUFFIX with SGLang (idempotent, every process)."""
    from sglang.srt.speculative.spec_info import SpeculativeAlgorithm
    from sglang.srt.speculative.spec_registry import get_spec

    if get_spec(ALGORITHM_NAME) is not None:
        return
    SpeculativeAlgorithm.register(ALGORITHM_NAME, spec_class=_spec_class())(
        lambda server_args: _worker_class()
    )


def speculative_args(argv: list[str], config: ArcticConfig) -> list[str]:
    """``--arctic-suffix-decoding`` as SGLang's own flag."""
    if not config.suffix_decoding:
        return argv
    flag = "--speculative-algorithm"
    given = [a.split("=", 1)[1] for a in argv if a.startswith(flag + "=")]
    given += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]
    if not given:
        return argv + [flag, ALGORITHM_NAME]
    if any(v.upper() != ALGORITHM_NAME for v in given):
        raise SystemExit(
            f"sglang_arctic: --arctic-suffix-decoding conflicts with {flag} {given[0]}"
        )
    return argv
