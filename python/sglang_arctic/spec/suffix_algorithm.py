"""``--speculative-algorithm ARCTIC_SUFFIX``: SuffixDecoding inside SGLang.

SGLang's NGRAM worker already does everything around the draft source: it
turns a (tokens, tree mask) draft per request into a TARGET_VERIFY batch,
verifies it with SGLang's tree-verify path (greedy and sampled), and commits
the accepted tokens. ARCTIC_SUFFIX is that worker with a different draft
source, so the algorithm registers as NGRAM-like (``is_ngram()``) and the
worker overrides only the two draft-source methods:

* ``_prepare_draft_tokens``: bring each request's suffix tree up to date with
  the tokens it has committed, then ask ``SuffixCache.speculate`` for a draft
  and pack it into NGRAM's layout;
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
from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np

from sglang_arctic.config import ArcticConfig, load_config

logger = logging.getLogger(__name__)

ALGORITHM_NAME = "ARCTIC_SUFFIX"
# NGRAM's batch default: the worker preallocates draft buffers per running request.
DEFAULT_MAX_RUNNING_REQUESTS = 48


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
        )


def default_verify_width(config: ArcticConfig, device: str) -> int:
    """Root plus draft budget, when --speculative-num-draft-tokens is not given.

    Every request verifies the full width each step, padding included. On a
    GPU that is nearly free; on a CPU it is paid token by token (measured on
    chat at 8 streams: width 17 ran at 0.66x of no speculation, width 6 at
    1.21x; docs/benchmarks.md)."""
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

    def draft(self, rid: Hashable, prompt: Sequence[int], output: Sequence[int],
              may_draft: bool) -> tuple[np.ndarray, np.ndarray]:
        self._sync_request(rid, prompt, output)
        depth = self.params.max_depth
        tail = list(output[-depth:])
        if len(tail) < depth:
            tail = list(prompt[max(0, len(prompt) - (depth - len(tail))):]) + tail
        # Never propose past the context length: verify writes `width` KV slots
        # and every accepted token must still fit the model's context.
        room = self.max_context_len - (len(prompt) + len(output)) - 1
        budget = min(self.width - 1, max(room, 0))
        token_ids: list[int] = []
        parents: list[int] = []
        if may_draft and budget > 0 and len(tail) > 1:
            d = self.cache.speculate(
                rid, tail,
                max_spec_tokens=budget,
                factor=self.params.max_spec_factor,
                offset=self.params.max_spec_offset,
                min_token_prob=self.params.min_token_prob,
                use_tree=self.params.tree_spec,
            )
            token_ids, parents = d.token_ids, d.parents
        return pack_draft(tail[-1], token_ids, parents, self.width)


# ---------------------------------------------------------------------------
# SGLang side: the worker and the algorithm registration
# ---------------------------------------------------------------------------


def _worker_class():
    """Built lazily: importing SGLang's worker pulls in its model-side code."""
    from sglang.srt.speculative.ngram_worker import NGRAMWorker

    class SuffixDecodingWorker(NGRAMWorker):
        """NGRAM's worker with suffix trees as the draft source."""

        def __init__(self, server_args, gpu_id, nccl_port, target_worker):
            super().__init__(server_args, gpu_id, nccl_port, target_worker)
            params = SuffixSpecParams.from_config(load_config())
            self.ngram_corpus = SuffixDraftSource(
                params,
                width=self.draft_token_num,
                max_context_len=self.model_runner.model_config.context_len,
            )
            logger.info("ARCTIC_SUFFIX speculation: %s, verify width %d",
                        params, self.draft_token_num)

        def _prepare_draft_tokens(self, batch):
            if self.enable_overlap:
                raise RuntimeError(
                    f"{ALGORITHM_NAME} runs without overlap scheduling; "
                    "its server-args hook should have disabled it"
                )
            source: SuffixDraftSource = self.ngram_corpus
            limit = source.params.max_batch_size
            tokens, masks = [], []
            for i, req in enumerate(batch.reqs):
                t, m = source.draft(
                    req.rid, req.origin_input_ids_unpadded, req.output_ids,
                    may_draft=i < limit,
                )
                tokens.append(t)
                masks.append(m.reshape(-1))
            return np.concatenate(tokens), np.concatenate(masks)

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
