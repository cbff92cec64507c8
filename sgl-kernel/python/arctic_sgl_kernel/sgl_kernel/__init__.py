"""CPU build of ``sgl_kernel`` for SGLang's CPU engine (pure torch).

``arctic_sgl_kernel.import_hook`` serves this package under the name
``sgl_kernel`` only where the real (CUDA) package cannot be imported. It
provides the ops SGLang 0.5.23 imports on the CPU path of a dense model with
plain or speculative (NGRAM/EAGLE) decoding; each module documents its ops'
exact semantics and the SGLang reference kernel they reproduce:

- ``kvcache``: ``copy_all_layer_kv_cache_cpu``, ``assign_req_to_token_pool_cpu``
- ``cache_locs``: ``assign_extend_cache_locs_cpu``,
  ``assign_draft_cache_locs_contiguous_cpu``
- ``eagle``: ``fill_bonus_tokens_cpu``, ``fill_accept_out_cache_loc_cpu``
- ``speculative``: ``build_tree_kernel_efficient_cpu``, ``verify_tree_greedy_cpu``,
  ``reconstruct_indices_from_tree_mask`` (imported by SGLang as
  ``sgl_kernel.speculative.reconstruct_indices_from_tree_mask``)

Deliberately absent: ``torch.ops.sgl_kernel.*`` registrations. SGLang turns its
Intel-AMX code paths on when ``torch.ops.sgl_kernel.convert_weight_packed``
exists, and those need the native kernels; without it they stay off.
"""

from .cache_locs import (
    assign_draft_cache_locs_contiguous_cpu,
    assign_extend_cache_locs_cpu,
)
from .eagle import fill_accept_out_cache_loc_cpu, fill_bonus_tokens_cpu
from .kvcache import assign_req_to_token_pool_cpu, copy_all_layer_kv_cache_cpu
from .speculative import (
    build_tree_kernel_efficient_cpu,
    reconstruct_indices_from_tree_mask,
    verify_tree_greedy_cpu,
)

__all__ = [
    "assign_draft_cache_locs_contiguous_cpu",
    "assign_extend_cache_locs_cpu",
    "assign_req_to_token_pool_cpu",
    "build_tree_kernel_efficient_cpu",
    "copy_all_layer_kv_cache_cpu",
    "fill_accept_out_cache_loc_cpu",
    "fill_bonus_tokens_cpu",
    "reconstruct_indices_from_tree_mask",
    "verify_tree_greedy_cpu",
]
