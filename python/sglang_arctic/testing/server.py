"""Start a real server as a child process and wait until it serves.

Used by the end-to-end tests and the benchmarks. The server runs in its own
process group so that stopping it also stops SGLang's scheduler and
detokenizer children, and its output goes to a log file whose tail is shown
when it fails to start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import requests

ARCTIC_LAUNCHER = [sys.executable, "-m", "sglang_arctic.launch_server"]
# The `sglang` console script of this interpreter's environment.
VANILLA_LAUNCHER = [str(Path(sys.executable).with_name("sglang")), "serve"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerStartError(RuntimeError):
    pass


@dataclass
class ServerHandle:
    process: subprocess.Popen
    base_url: str
    log_path: Path
    argv: list[str] = field(default_factory=list)
    ready: bool = False

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, timeout: float = 180.0, ready_path: str = "/health_generate") -> "ServerHandle":
        """Block until ``ready_path`` answers 200 (at once when it already did);
        on failure or Ctrl-C the server is stopped."""
        if self.ready:
            return self
        try:
            _wait_ready(self, ready_path, timeout)
        except BaseException:
            # The server runs in its own session, so nothing else would ever
            # stop it (or the children a failed launcher left behind).
            self.stop(timeout=5)
            raise
        self.ready = True
        return self

    def wait_exit(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for the launcher to exit on its own;
        its exit code, or None while it is still up."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM the whole process group, then SIGKILL what is left."""
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(self.process.pid, signal.SIGKILL)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        return self.process.returncode


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def start(
    argv: Sequence[str],
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    launcher: Sequence[str] = ARCTIC_LAUNCHER,
    log_dir: str | None = None,
) -> ServerHandle:
    """Start ``launcher + argv --port PORT`` and return at once; ``wait_ready``
    before use. Servers started together load in parallel (most of a start is
    single-threaded imports, so two starts on two cores take little longer than one)."""
    port = port or free_port()
    full_argv = list(launcher) + list(argv) + ["--port", str(port)]
    log_file = tempfile.NamedTemporaryFile(
        prefix=f"server-{port}-", suffix=".log", dir=log_dir, delete=False
    )
    child_env = dict(os.environ)
    child_env.update(env or {})
    process = subprocess.Popen(
        full_argv,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=child_env,
        start_new_session=True,
    )
    return ServerHandle(process, f"http://127.0.0.1:{port}", Path(log_file.name), full_argv)


def launch(
    argv: Sequence[str],
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 180.0,
    launcher: Sequence[str] = ARCTIC_LAUNCHER,
    log_dir: str | None = None,
    ready_path: str = "/health_generate",
) -> ServerHandle:
    """Start ``launcher + argv --port PORT``; return once ``ready_path`` answers 200."""
    handle = start(argv, port=port, env=env, launcher=launcher, log_dir=log_dir)
    return handle.wait_ready(timeout, ready_path)


def launch_together(*argvs: Sequence[str], timeout: float = 300.0, **kwargs) -> list[ServerHandle]:
    """``launch`` several servers at once; if one fails, all are stopped."""
    handles = [start(argv, **kwargs) for argv in argvs]
    try:
        for handle in handles:
            handle.wait_ready(timeout)
    except BaseException:
        for handle in handles:
            handle.stop(timeout=5)
        raise
    return handles


def _wait_ready(handle: ServerHandle, ready_path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    command = " ".join(handle.argv)
    while time.monotonic() < deadline:
        if handle.process.poll() is not None:
            raise ServerStartError(
                f"server exited with code {handle.process.returncode} during start-up:\n"
                f"{command}\n{handle.log_tail()}"
            )
        try:
            if requests.get(handle.base_url + ready_path, timeout=30).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1.0)
    raise ServerStartError(f"server not ready after {timeout:.0f} s:\n{command}\n{handle.log_tail()}")


def run_to_exit(
    argv: Sequence[str], *, timeout: float = 120.0, launcher: Sequence[str] = ARCTIC_LAUNCHER,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run a launcher that is expected to stop by itself (e.g. on a bad flag)."""
    child_env = dict(os.environ)
    child_env.update(env or {})
    return subprocess.run(
        list(launcher) + list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env,
        stdin=subprocess.DEVNULL,
    )


def requests_in_flight(base_url: str, headers: Mapping[str, str] | None = None) -> int:
    """Running plus waiting requests, by the server's own count (``/v1/loads``)."""
    r = requests.get(base_url + "/v1/loads", params={"include": "core"}, headers=headers, timeout=30)
    r.raise_for_status()
    return sum(x.get("num_running_reqs", 0) + x.get("num_waiting_reqs", 0) for x in r.json()["loads"])
