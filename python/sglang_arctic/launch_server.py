"""``python -m sglang_arctic.launch_server``: every ``sglang serve`` flag plus ``--arctic-*``.

What it adds to SGLang's launcher, in order:
1. ``--arctic-*`` flags are parsed into a typed ``ArcticConfig`` (a bad value is
   a startup error naming the flag) and exported to the environment for
   SGLang's spawned children; they are removed from the argv SGLang sees.
2. Safe serving defaults (``api/server_defaults.py``): no public bind without
   an API key, a bounded queue and a waiting timeout.
3. With no ``--model-path`` it serves the embedded default model
   (SmolLM2-135M-Instruct, materialized once into the user cache).
4. With no usable GPU it selects SGLang's CPU engine and CPU defaults for
   every flag the user did not set (see ``cpu_defaults``).
Then SGLang's own ``prepare_server_args`` / ``run_server`` take over.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from typing import Sequence

from sglang_arctic.api.server_defaults import UnsafeBindError, flag_value, safe_server_args
from sglang_arctic.config import ArcticConfig, ArcticConfigError, export_config
from sglang_arctic.spec.suffix_algorithm import speculative_args

logger = logging.getLogger(__name__)

ARCTIC_PREFIX = "--arctic-"
CPU_ATTENTION_BACKEND = "arctic"


# ---------------------------------------------------------------------------
# --arctic-* flags, generated from the ArcticConfig fields
# ---------------------------------------------------------------------------


def _flag(field_name: str) -> str:
    return ARCTIC_PREFIX + field_name.replace("_", "-")


def add_arctic_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sglang_arctic options")
    for f in dataclasses.fields(ArcticConfig):
        help_text = f"{f.metadata.get('help', '')} (default: {f.default})"
        if isinstance(f.default, bool):
            group.add_argument(
                _flag(f.name),
                dest=f"arctic_{f.name}",
                action=argparse.BooleanOptionalAction,
                default=f.default,
                help=help_text,
            )
        else:
            group.add_argument(
                _flag(f.name),
                dest=f"arctic_{f.name}",
                type=type(f.default),
                default=f.default,
                help=help_text,
            )


def split_arctic_args(argv: Sequence[str]) -> tuple[ArcticConfig, list[str]]:
    """Parse the ``--arctic-*`` flags out of ``argv``; return the config and the rest.

    Unknown ``--arctic-*`` flags stay in the rest, where SGLang's parser
    rejects them as unrecognized arguments.
    """
    parser = argparse.ArgumentParser(prog="sglang_arctic.launch_server", add_help=False)
    add_arctic_args(parser)
    known, rest = parser.parse_known_args(list(argv))
    unknown = [a.split("=", 1)[0] for a in rest if a.startswith(ARCTIC_PREFIX)]
    if unknown:
        # Said here, at once: SGLang's parser would say it only after a long import.
        parser.error(f"unrecognized arguments: {' '.join(unknown)} "
                     "(see --help for the --arctic-* flags)")
    values = {
        f.name: getattr(known, f"arctic_{f.name}") for f in dataclasses.fields(ArcticConfig)
    }
    try:
        config = ArcticConfig(**values).validate()
    except ArcticConfigError as exc:
        parser.error(str(exc))
    return config, rest


# ---------------------------------------------------------------------------
# Defaults that depend on the machine
# ---------------------------------------------------------------------------


def _given(argv: Sequence[str], *flags: str) -> bool:
    return any(a == f or a.startswith(f + "=") for a in argv for f in flags)


def cuda_usable() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.device_count() > 0


NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes bf16 matmuls in hardware (AVX512-BF16 or AMX).

    Without either, torch emulates bf16 GEMMs at a small fraction of its fp32
    speed (measured on an AVX2 EPYC: 0.8 vs 37 GFLOPS), so fp32 serves faster.
    Unknown (no /proc/cpuinfo) counts as native: the model's own dtype is kept.
    """
    try:
        with open(cpuinfo) as f:
            text = f.read()
    except OSError:
        return True
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
    return any(f in flags for f in NATIVE_BF16_CPU_FLAGS)


def cpu_default_dtype() -> str:
    """The ``--dtype`` our CPU defaults pass: the model's own where bf16 is native."""
    return "auto" if cpu_has_native_bf16() else "float32"


def cpu_defaults(argv: list[str], config: ArcticConfig) -> list[str]:
    """SGLang's CPU engine plus the flags that make it start fast and serve well."""
    os.environ["SGLANG_USE_CPU_ENGINE"] = "1"
    extra: list[str] = []
    if not _given(argv, "--device"):
        extra += ["--device", "cpu"]
    if not _given(argv, "--attention-backend"):
        extra += ["--attention-backend", CPU_ATTENTION_BACKEND]
    if not _given(argv, "--max-total-tokens"):
        extra += ["--max-total-tokens", str(config.cpu_kv_tokens)]
    if not _given(argv, "--dtype"):
        extra += ["--dtype", cpu_default_dtype()]
    if not _given(argv, "--sleep-on-idle"):
        # Without it an idle scheduler polls in a busy loop and holds a whole
        # core; on a CPU server that core is the one the model needs. The
        # sleep is a zmq poll, so a new request wakes it at once.
        extra += ["--sleep-on-idle"]
    return argv + extra


def check_local_model_path(argv: Sequence[str]) -> None:
    """A model path written as a filesystem path must exist (a hub id like org/name is
    left to SGLang). Said at once, rather than after SGLang's import and config load."""
    value = flag_value(argv, "--model-path") or flag_value(argv, "--model")
    if value and value.startswith(("/", "./", "../", "~")) and not os.path.exists(os.path.expanduser(value)):
        raise SystemExit(f"sglang_arctic: --model-path {value}: no such file or directory")


def default_model_args(argv: list[str]) -> list[str]:
    if _given(argv, "--model-path", "--model"):
        check_local_model_path(argv)
        return argv
    from sglang_arctic.models.default_model import DefaultModelError, materialize

    try:
        path = materialize()
    except DefaultModelError as exc:
        raise SystemExit(f"sglang_arctic: {exc}") from exc
    return argv + ["--model-path", str(path)]


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


def print_help() -> None:
    from sglang.srt.server_args import ServerArgs

    parser = argparse.ArgumentParser(
        prog="python -m sglang_arctic.launch_server",
        description="sglang_arctic server: every `sglang serve` flag plus --arctic-* flags. "
        "With no --model-path it serves the embedded SmolLM2-135M-Instruct; with no GPU "
        "it selects SGLang's CPU engine.",
    )
    ServerArgs.add_cli_args(parser)
    add_arctic_args(parser)
    parser.print_help()


def build_argv(argv: Sequence[str]) -> tuple[ArcticConfig, list[str]]:
    """The arctic config and the argv to hand to SGLang (no side effects but env)."""
    config, rest = split_arctic_args(argv)
    rest = speculative_args(rest, config)
    try:
        rest = safe_server_args(rest, config)
    except UnsafeBindError as exc:
        raise SystemExit(f"sglang_arctic: {exc}") from exc
    rest = default_model_args(rest)
    if config.cpu_auto and not cuda_usable():
        rest = cpu_defaults(rest, config)
    return config, rest


def check_scheduling(config: ArcticConfig) -> None:
    """A bad ranker or trace file stops the launch here, not in the scheduler process."""
    if config.schedule == "off" and not config.schedule_trace:
        return
    from sglang_arctic.scheduling.scorers import SchedulingSetupError, check_startup

    try:
        check_startup(config)
    except SchedulingSetupError as exc:
        raise SystemExit(f"sglang_arctic: {exc}") from exc


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print_help()
        return
    config, sglang_argv = build_argv(argv)
    check_scheduling(config)
    export_config(config)

    from sglang.launch_server import run_server
    from sglang.srt.plugins import load_plugins
    from sglang.srt.server_args import prepare_server_args
    from sglang.srt.utils import kill_process_tree

    load_plugins()
    server_args = prepare_server_args(sglang_argv)
    try:
        run_server(server_args)
    finally:
        kill_process_tree(os.getpid(), include_parent=False)


if __name__ == "__main__":
    main()
