"""Shared fixtures. End-to-end tests start real servers on CPU (see test/server/)."""

from __future__ import annotations

import pytest

from sglang_arctic.testing.server import launch


@pytest.fixture(scope="session")
def arctic_server():
    """`python -m sglang_arctic.launch_server` with no arguments but a port:
    the embedded default model on CPU, our attention backend, our kernels."""
    handle = launch([])
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def base_url(arctic_server):
    return arctic_server.base_url
