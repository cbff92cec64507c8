"""No TCP listener beyond loopback for a single-process model group.

SGLang initializes torch.distributed with ``tcp://<host>:<port>`` even when
the model runs in one process (tp = pp = 1), and torch's ``TCPStore`` server
listens on every interface whatever host the URL names: a fresh CPU server
had its scheduler listening on ``*:<port>`` next to a loopback HTTP port. With
one process there is nobody to rendezvous with, so a ``file://`` store in a
private temporary folder does the same job without a socket, and gloo's
per-group sockets are kept on the loopback interface (``GLOO_SOCKET_IFNAME=lo``
unless set).

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
    # gloo opens a listening socket per process group on the address the host
    # name resolves to, which may be a public one; one process needs loopback only.
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
