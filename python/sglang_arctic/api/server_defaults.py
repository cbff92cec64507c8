"""Launcher defaults that make a fresh server safe to expose and hard to overload.

SGLang binds loopback by default but lets ``--host 0.0.0.0`` serve anyone with
no key, and its queue bound and waiting timeout are off by default. Our
launcher refuses the first without an explicit opt-in and turns the others
on; every value the user gives wins.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Sequence

from sglang_arctic.config import ArcticConfig

WAITING_TIMEOUT_ENV = "SGLANG_REQ_WAITING_TIMEOUT"


class UnsafeBindError(ValueError):
    pass


def flag_value(argv: Sequence[str], flag: str) -> str | None:
    """The value of the last ``flag V`` / ``flag=V`` in ``argv``."""
    value = None
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(flag + "="):
            value = arg[len(flag) + 1:]
    return value


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(argv: Sequence[str], config: ArcticConfig) -> None:
    host = flag_value(argv, "--host") or "127.0.0.1"
    if is_loopback(host) or config.allow_public_bind:
        return
    if flag_value(argv, "--api-key"):
        return
    raise UnsafeBindError(
        f"--host {host} would serve beyond this machine with no --api-key: anyone who reaches the port "
        "could use (and abort, pause or reconfigure) the server. Set --api-key (and --admin-api-key), "
        "or pass --arctic-allow-public-bind if a proxy in front of it authenticates."
    )


def safe_server_args(argv: list[str], config: ArcticConfig) -> list[str]:
    """``argv`` with the queue bound added (unless given) and the waiting timeout
    exported (unless set); raises ``UnsafeBindError`` for an open public bind."""
    check_bind(argv, config)
    extra: list[str] = []
    if config.max_queued_requests and flag_value(argv, "--max-queued-requests") is None:
        extra += ["--max-queued-requests", str(config.max_queued_requests)]
    if config.queue_timeout and WAITING_TIMEOUT_ENV not in os.environ:
        os.environ[WAITING_TIMEOUT_ENV] = str(config.queue_timeout)
    return argv + extra
