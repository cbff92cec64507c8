"""SIGTERM with requests in flight, on the session's default server (the
launcher with no flags: ``--arctic-drain-timeout`` 30 s). The signal goes to the
launcher alone, as a supervisor sends it (systemd ``KillMode=mixed``,
Kubernetes). This stops the server, so the test runs after every other one
(the ``ends_session_server`` marker, ordered by test/conftest.py)."""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest
import requests

from sglang_arctic.config import ArcticConfig
from sglang_arctic.testing.server import requests_in_flight

PROMPT = "<|im_start|>user\nCount from one to fifty in words.<|im_end|>\n<|im_start|>assistant\n"
DEADLINE_S = ArcticConfig().drain_timeout
# SGLang's drain loop polls every 5 s; then the schedulers and the HTTP server stop.
EXIT_SLACK_S = 12


def _post_in_thread(url: str, max_new_tokens: int, results: dict, key: str, stream: bool) -> threading.Thread:
    def run():
        body = {"text": PROMPT, "stream": stream,
                "sampling_params": {"temperature": 0, "max_new_tokens": max_new_tokens, "ignore_eos": True}}
        try:
            with requests.post(url + "/generate", json=body, stream=stream, timeout=DEADLINE_S + 60) as r:
                lines = [line for line in r.iter_lines() if line] if stream else [r.content]
                results[key] = (r.status_code, lines, time.monotonic())
        except requests.RequestException as exc:
            results[key] = (None, [repr(exc)[:200]], time.monotonic())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.ends_session_server
def test_sigterm_finishes_short_requests_refuses_new_ones_and_exits_by_the_deadline(arctic_server):
    server = arctic_server
    url = server.base_url
    children = psutil.Process(server.process.pid).children(recursive=True)
    results: dict = {}
    # One request that finishes well within the deadline, one that cannot
    # (about 4000 tokens at tens of tokens per second on 2 cores).
    threads = [_post_in_thread(url, 48, results, "short", stream=False),
               _post_in_thread(url, 4000, results, "long", stream=True)]
    wait_until = time.monotonic() + 60
    while requests_in_flight(url) < 2 and time.monotonic() < wait_until:
        time.sleep(0.1)
    assert requests_in_flight(url) == 2, server.log_tail()

    os.kill(server.process.pid, signal.SIGTERM)
    t0 = time.monotonic()
    # Pass: from the signal on, new work gets 503 with Retry-After (within 2 s:
    # the signal handler runs on the next event-loop turn), and /health says so.
    refused = None
    while time.monotonic() - t0 < 2 and refused is None:
        r = requests.post(url + "/generate", json={"text": "hi", "sampling_params": {"max_new_tokens": 2}},
                          timeout=10)
        if r.status_code == 503:
            refused = r
    assert refused is not None, "a new request was still accepted 2 s after SIGTERM"
    assert refused.headers.get("Retry-After"), refused.headers
    assert requests.get(url + "/health", timeout=10).status_code == 503

    # Pass: the short request completes normally; the long one is ended at
    # the deadline with an answer (no hang, no cut connection); the server
    # exits 0 within DEADLINE_S + EXIT_SLACK_S and leaves no process behind.
    server.wait_exit(DEADLINE_S + EXIT_SLACK_S)
    exited_after = time.monotonic() - t0
    assert server.process.poll() is not None, f"still up {exited_after:.0f} s after SIGTERM:\n{server.log_tail()}"
    for thread in threads:
        thread.join(timeout=10)
    status, body, _ = results["short"]
    assert status == 200, (status, body)
    assert b'"completion_tokens":48' in body[0].replace(b" ", b""), body
    status, lines, finished_at = results["long"]
    assert status == 200, (status, lines)
    assert finished_at - t0 >= DEADLINE_S - 1, "the long request was ended before the deadline"
    assert any(b'"abort"' in line for line in lines[-3:]), lines[-3:]
    assert server.process.returncode == 0, (server.process.returncode, server.log_tail())
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"children outlived the server: {alive}"
    print(f"exited {exited_after:.1f} s after SIGTERM (deadline {DEADLINE_S:.0f} s)")
