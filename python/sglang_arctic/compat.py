"""The SGLang version we are built against, checked loudly in every process."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

EXPECTED_SGLANG_VERSION = "0.5.23"


class SGLangVersionMismatch(SystemExit):
    """A SystemExit, so that SGLang's plugin loader (which logs and swallows
    ``Exception``) cannot hide it: a mismatched host must stop the process."""


def installed_sglang_version() -> str | None:
    try:
        return version("sglang")
    except PackageNotFoundError:
        return None


def check_sglang_version() -> None:
    installed = installed_sglang_version()
    if installed != EXPECTED_SGLANG_VERSION:
        raise SGLangVersionMismatch(
            f"sglang_arctic requires sglang=={EXPECTED_SGLANG_VERSION}, but "
            f"{'sglang is not installed' if installed is None else f'sglang {installed} is installed'}. "
            f"Install the pinned version: pip install sglang=={EXPECTED_SGLANG_VERSION}"
        )


# Set to a file path to have every process that loads the plugin append one
# line "<pid> <process name>" to it. SGLang logs plugin loading at INFO before
# its own logging is configured, so the log cannot show which processes really
# ran the plugin; this can (the plugin-parity test uses it).
PLUGIN_TRACE_ENV = "SGLANG_ARCTIC_PLUGIN_TRACE"


def trace_plugin_load() -> None:
    import os

    path = os.environ.get(PLUGIN_TRACE_ENV)
    if not path:
        return
    import multiprocessing

    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()} {multiprocessing.current_process().name}\n")
