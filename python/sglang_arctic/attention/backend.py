"""The ``arctic`` attention backend.

On CUDA it is SGLang's flashinfer backend (``create_arctic_backend`` returns
that object). On CPU it is :class:`ArcticCPUAttnBackend`: batched torch SDPA
over the paged KV pool, for

* EXTEND / MIXED (prefill, prefix-cache hits, chunked prefill): short extends
  are batched with explicit bottom-right causal masks, long ones run one
  request per call (``is_causal`` when there is no cached prefix);
* DECODE: all requests in one (or a few length-bucketed) padded SDPA calls;
* TARGET_VERIFY: the draft tokens of every request in one padded call, with the
  speculative tree (``spec_info.custom_mask``) as the mask over the drafts.

Attention runs in the query dtype (the model dtype), so ``--dtype float32``
gives an fp32 backend. The per-forward plan lives in ``plan.py``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Dict, Optional

import torch

from sglang.srt.layers.attention.base_attn_backend import AttentionBackend
from sglang.srt.layers.radix_attention import AttentionType
from sglang.srt.mem_cache.memory_pool import KVWriteLoc

from sglang_arctic.attention import BACKEND_NAME
from sglang_arctic.attention.plan import (
    Plan,
    Workspace,
    plan_decode,
    plan_extend,
    plan_verify,
    run_plan,
)

if TYPE_CHECKING:
    from sglang.srt.layers.radix_attention import RadixAttention
    from sglang.srt.model_executor.forward_batch_info import ForwardBatch
    from sglang.srt.model_executor.model_runner import ModelRunner

logger = logging.getLogger(__name__)


def create_arctic_backend(runner: "ModelRunner"):
    """Factory registered under the name ``arctic``."""
    device = str(runner.device)
    if device.startswith("cuda"):
        from sglang.srt.layers.attention.attention_registry import ATTENTION_BACKENDS

        return ATTENTION_BACKENDS["flashinfer"](runner)
    if device != "cpu":
        raise ValueError(
            f"attention backend {BACKEND_NAME!r} runs on cpu (torch) and cuda "
            f"(flashinfer); got device {device!r}"
        )
    return ArcticCPUAttnBackend(runner)


def _lengths(cpu_values, tensor: Optional[torch.Tensor]) -> list:
    """Python ints from the host mirror when SGLang gives one, else the tensor."""
    if cpu_values is not None:
        values = cpu_values.tolist() if isinstance(cpu_values, torch.Tensor) else cpu_values
    else:
        values = tensor.tolist()
    return [int(x) for x in values]


class ArcticCPUAttnBackend(AttentionBackend):
    def __init__(self, model_runner: "ModelRunner"):
        super().__init__()
        self.device = model_runner.device
        self.req_to_token_pool = model_runner.req_to_token_pool
        self.token_to_kv_pool = model_runner.token_to_kv_pool
        self._check_pool(self.token_to_kv_pool)
        self.forward_metadata: Optional[Plan] = None
        self._batch: Optional["ForwardBatch"] = None
        self._plans: Dict[bool, Plan] = {}
        self.workspace = Workspace()

    @staticmethod
    def _check_pool(pool) -> None:
        name = type(pool).__name__
        if "SWA" in name or "MLA" in name or "Hybrid" in name:
            raise NotImplementedError(
                f"attention backend {BACKEND_NAME!r} supports plain MHA KV pools "
                f"on CPU; got {name}"
            )

    # ------------------------------------------------------------------
    # metadata
    # ------------------------------------------------------------------

    def init_forward_metadata(self, forward_batch: "ForwardBatch"):
        mode = forward_batch.forward_mode
        self._batch = forward_batch
        self._plans = {}
        if mode.is_idle():
            self.forward_metadata = None
            return
        if mode.is_draft_extend_v2():
            # Unreachable with NGRAM (no draft model); EAGLE-style drafts on CPU
            # would need it.
            raise NotImplementedError(
                f"attention backend {BACKEND_NAME!r} has no DRAFT_EXTEND_V2 path"
            )
        self.forward_metadata = self._plan(forward_batch, causal=True)

    def _plan(self, fb: "ForwardBatch", causal: bool) -> Plan:
        plan = self._plans.get(causal)
        if plan is not None:
            return plan
        req_to_token = self.req_to_token_pool.req_to_token
        mode = fb.forward_mode
        seq_lens = _lengths(fb.seq_lens_cpu, fb.seq_lens)
        if mode.is_decode():
            plan = plan_decode(req_to_token, fb.req_pool_indices, seq_lens)
        elif mode.is_target_verify():
            spec = fb.spec_info
            if spec is None:
                raise RuntimeError("TARGET_VERIFY forward without spec_info")
            custom_mask = getattr(spec, "custom_mask", None)
            if getattr(spec, "tree_topk", -1) == 1:
                custom_mask = None  # a chain: plain causal over the drafts
            plan = plan_verify(
                req_to_token, fb.req_pool_indices, seq_lens,
                int(spec.draft_token_num), custom_mask,
            )
        else:
            prefix = _lengths(fb.extend_prefix_lens_cpu, fb.extend_prefix_lens)
            extend = _lengths(fb.extend_seq_lens_cpu, fb.extend_seq_lens)
            plan = plan_extend(req_to_token, fb.req_pool_indices, prefix, extend, causal)
        self._plans[causal] = plan
        return plan

    # ------------------------------------------------------------------
    # forward
    # ------------------------------------------------------------------

    def _check_layer(self, layer: "RadixAttention") -> None:
        if layer.is_cross_attention:
            raise NotImplementedError(f"{BACKEND_NAME!r}: cross-attention is not supported")
        if layer.sliding_window_size is not None and layer.sliding_window_size > -1:
            raise NotImplementedError(f"{BACKEND_NAME!r}: sliding-window attention is not supported")
        if layer.logit_cap and layer.logit_cap > 0:
            raise NotImplementedError(f"{BACKEND_NAME!r}: attention logit capping is not supported")

    def _attend(self, q, k, v, layer, forward_batch, save_kv_cache, plan: Plan):
        self._check_layer(layer)
        if save_kv_cache and k is not None and v is not None:
            self.token_to_kv_pool.set_kv_buffer(
                layer, KVWriteLoc(forward_batch.out_cache_loc), k, v
            )
        Hq, D, Dv = layer.tp_q_head_num, layer.qk_head_dim, layer.v_head_dim
        q_ = q.reshape(-1, Hq, D)
        o = q.new_empty((q_.shape[0], Hq * Dv))
        run_plan(
            plan,
            q_,
            self.token_to_kv_pool.get_key_buffer(layer.layer_id),
            self.token_to_kv_pool.get_value_buffer(layer.layer_id),
            o.view(-1, Hq, Dv),
            layer.scaling,
            self.workspace,
        )
        return o

    def forward_decode(self, q, k, v, layer, forward_batch, save_kv_cache=True, **kwargs):
        return self._attend(q, k, v, layer, forward_batch, save_kv_cache, self.forward_metadata)

    def forward_extend(self, q, k, v, layer, forward_batch, save_kv_cache=True, **kwargs):
        causal = layer.attn_type == AttentionType.DECODER
        plan = self.forward_metadata
        if not causal:
            if forward_batch.forward_mode.is_target_verify():
                raise NotImplementedError(f"{BACKEND_NAME!r}: non-causal layers cannot verify drafts")
            plan = self._plan(forward_batch, causal=False)
        return self._attend(q, k, v, layer, forward_batch, save_kv_cache, plan)

    # ------------------------------------------------------------------
    # capabilities
    # ------------------------------------------------------------------

    def support_triton(self):
        return False

    # SGLang's CPU graph runner (only with --enable-torch-compile) is not
    # supported: our plans have data-dependent shapes.
    def _no_cpu_graph(self, *args, **kwargs):
        raise NotImplementedError(
            f"attention backend {BACKEND_NAME!r} does not support the CPU graph "
            "runner (--enable-torch-compile on CPU); run without it"
        )

    init_cpu_graph_state = _no_cpu_graph
    init_forward_metadata_capture_cpu_graph = _no_cpu_graph
    get_cpu_graph_seq_len_fill_value = _no_cpu_graph
