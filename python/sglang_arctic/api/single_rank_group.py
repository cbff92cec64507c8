"""A torch.distributed process group for a world of one process, with no sockets.

gloo opens a listening TCP socket for every process group it creates, even when
the group holds a single rank and will never hear from a peer. SGLang builds
several such groups in each scheduler (the world group on CPU, one CPU group
per parallel dimension). With one process every collective is the identity
(all-reduce, broadcast and barrier leave the data as it is; gathers, scatters
and all-to-all copy the input to the output), so this group does them in
place and completes at once, and the scheduler listens on no port at all.

``use_for_gloo_in_single_process()`` makes ``torch.distributed`` build this
group wherever gloo was asked for, for as long as the world has one process;
it is called only from the single-process branch of ``process_group.py``.
"""

from __future__ import annotations

import functools
import inspect
from typing import Sequence

import torch
import torch.distributed as dist
from torch._C._distributed_c10d import _create_work_from_future
from torch.futures import Future

BACKEND_NAME = "arctic_single_rank"
_installed = False


def _completed(result) -> dist.Work:
    future: Future = Future()
    future.set_result(result)
    return _create_work_from_future(future)


def _copy_pairs(outputs: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor]) -> None:
    for out, inp in zip(outputs, inputs, strict=True):
        if out.data_ptr() != inp.data_ptr():
            out.copy_(inp)


class SingleRankProcessGroup(dist.ProcessGroup):
    """Rank 0 of 1 (torch itself refuses point-to-point operations to oneself)."""

    def __init__(self) -> None:
        super().__init__(0, 1)

    def getBackendName(self) -> str:  # noqa: N802 (torch's name)
        return BACKEND_NAME

    # data stays as it is
    def allreduce(self, tensors, opts=None):
        return _completed(tensors)

    allreduce_coalesced = reduce = broadcast = allreduce

    def barrier(self, opts=None):
        return _completed(None)

    def monitored_barrier(self, timeout=None, wait_all_ranks=False) -> None:
        return None

    @property
    def _device_types(self) -> list[torch.device]:
        # torch checks this before a monitored barrier (which SGLang runs at start-up)
        return [torch.device("cpu")]

    # one-element lists of outputs: out_lists[i][0] <- inputs[i]
    def allgather(self, output_lists, inputs, opts=None):
        _copy_pairs([outs[0] for outs in output_lists], inputs)
        return _completed(output_lists)

    allgather_coalesced = gather = allgather

    # one-element lists of inputs: outputs[i] <- in_lists[i][0]
    def reduce_scatter(self, outputs, input_lists, opts=None):
        _copy_pairs(outputs, [ins[0] for ins in input_lists])
        return _completed(outputs)

    scatter = reduce_scatter

    # tensor to tensor
    def all_gather_single(self, output, input, opts=None):
        _copy_pairs([output], [input])
        return _completed(output)

    _allgather_base = reduce_scatter_single = _reduce_scatter_base = all_gather_single

    def all_to_all_single(self, output, input, output_split_sizes=None, input_split_sizes=None, opts=None):
        return self.all_gather_single(output, input)

    alltoall_base = all_to_all_single

    # lists of tensors, pairwise
    def allgather_into_tensor_coalesced(self, outputs, inputs, opts=None):
        _copy_pairs(outputs, inputs)
        return _completed(outputs)

    all_gather_single_coalesced = reduce_scatter_tensor_coalesced = alltoall = allgather_into_tensor_coalesced
    reduce_scatter_single_coalesced = allgather_into_tensor_coalesced


def _create(store, rank: int, world_size: int, timeout) -> SingleRankProcessGroup:
    if world_size != 1:
        raise RuntimeError(f"{BACKEND_NAME} serves a world of one process, not {world_size}")
    return SingleRankProcessGroup()


def _redirect_gloo(original, world_size_of):
    """``original`` with its ``backend`` argument replaced by ours when it asks
    for gloo and ``world_size_of(bound arguments)`` is 1."""
    signature = inspect.signature(original)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        bound = signature.bind_partial(*args, **kwargs)
        if str(bound.arguments.get("backend")).lower() == "gloo" and world_size_of(bound.arguments) == 1:
            bound.arguments["backend"] = BACKEND_NAME
        return original(*bound.args, **bound.kwargs)

    return wrapper


def use_for_gloo_in_single_process() -> None:
    """Register the backend and route this process's gloo groups of a one-process
    world to it (idempotent)."""
    global _installed
    if _installed:
        return
    dist.Backend.register_backend(BACKEND_NAME, _create, devices=["cpu"])
    dist.init_process_group = _redirect_gloo(
        dist.init_process_group, lambda a: a.get("world_size", -1))
    dist.new_group = _redirect_gloo(
        dist.new_group, lambda a: dist.get_world_size() if dist.is_initialized() else -1)
    _installed = True
