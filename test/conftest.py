"""Shared fixtures. End-to-end tests start real servers on CPU (see test/server/)."""

from __future__ import annotations

import os

import pytest

from sglang_arctic.testing.lossless import GREEDY_REFERENCE_FLAGS
from sglang_arctic.testing.server import launch, start


def pytest_collection_modifyitems(config, items):
    """Tests that stop a session server run after every other test (stable
    order otherwise)."""
    items.sort(key=lambda item: item.get_closest_marker("ends_session_server") is not None)


@pytest.fixture(autouse=True)
def _environment_restored():
    """Every test leaves os.environ as it found it. Our launcher code sets
    SGLang's variables (waiting timeout, forced shutdown) in os.environ when a
    unit test calls it in-process; servers started later inherit the test
    process's environment, so a leaked value changed their behaviour (a
    waiting-timeout kit server ran with 300 s instead of 1 ms)."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def arctic_server():
    """`python -m sglang_arctic.launch_server` with no arguments but a port:
    the embedded default model on CPU, our attention backend, our kernels."""
    handle = launch([])
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def greedy_reference_server():
    """One reference server for every speculative algorithm's lossless test
    (their modules sort next to each other, so it idles only between them).
    Returned while it is still loading, so that it loads in parallel with the
    first speculative server: call ``wait_ready`` before use."""
    handle = start(GREEDY_REFERENCE_FLAGS)
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def suffix_server():
    """SuffixDecoding with learned length scheduling, shared by the abuse matrix
    and the SuffixDecoding feature tests. SGLang folds speculative acceptance
    into its server-wide totals when it logs decode stats (every
    --decode-log-interval steps, default 40): logged more often so that short
    requests reach /server_info and the Prometheus metrics."""
    handle = launch(["--arctic-suffix-decoding", "--arctic-schedule", "ltr",
                     "--decode-log-interval", "5", "--enable-metrics"], timeout=300)
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def base_url(arctic_server):
    return arctic_server.base_url
