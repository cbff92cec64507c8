"""No TCP listener beyond loopback for a single-process model group.

SGLang initializes torch.distributed with ``tcp://<host>:<port>`` even when
the model runs in one process (tp = pp = 1), and torch's ``TCPStore`` server
listens on every interface whatever host the URL names: a fresh CPU server
had its scheduler listening on ``*:<port>`` next to a loopback HTTP port. With
one process there is nobody to rendezvous with, so a ``file://`` store in a
private temporary folder does the same job without a socket. gloo opened a
listening socket for each of the scheduler's process groups too; with one
process every collective is the identity, so those groups are built by
``single_rank_group.py`` instead, which needs no socket: the scheduler listens
on no port. (``GLOO_SOCKET_IFNAME=lo``, unless set, keeps any gloo group that
something still creates on the loopback interface.)

Hook surface: ``sglang.srt.distributed.bootstrap._resolve_dist_init_method``
(AROUND, scheduler processes), registered only with ``--arctic-local-process-group``
(on by default in our launcher). SGLang's own override
(``SGLANG_DISTRIBUTED_INIT_METHOD_OVERRIDE``), ``--dist-init-addr`` and any
world larger than one process keep SGLang's behaviour.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

TARGET = "sglang.srt.distributed.bootstrap._resolve_dist_init_method"
GLOO_IFNAME_ENV = "GLOO_SOCKET_IFNAME"
LOOPBACK_IFNAME = "lo"
_registered = False


def _resolve_dist_init_method(original, *args, **kwargs) -> str:
    from sglang.srt.distributed import bootstrap
    from sglang.srt.environ import envs

    parallel = bootstrap.get_parallel()
    if (
        envs.SGLANG_DISTRIBUTED_INIT_METHOD_OVERRIDE.get()
        or parallel.dist_init_addr
        or parallel.tp_size * parallel.pp_size != 1
    ):
        return original(*args, **kwargs)
    from sglang_arctic.api.single_rank_group import use_for_gloo_in_single_process

    use_for_gloo_in_single_process()
    # gloo would listen on the address the host name resolves to, which may be
    # a public one; one process needs loopback only.
    os.environ.setdefault(GLOO_IFNAME_ENV, LOOPBACK_IFNAME)
    # mkdtemp: mode 0700, unique per scheduler process (each DP rank has its own).
    store = Path(tempfile.mkdtemp(prefix="sglang_arctic_pg_")) / "store"
    logger.info("single-process model group: file store %s instead of a TCP store", store)
    return f"file://{store}"


def register_local_process_group(enabled: bool) -> None:
    global _registered
    if _registered or not enabled:
        return
    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    HookRegistry.register(TARGET, _resolve_dist_init_method, HookType.AROUND)
    _registered = True
