"""SGLang general-plugin entry point (``sglang.srt.plugins``).

SGLang calls ``register()`` early in every process (launcher/HTTP server,
scheduler, detokenizer, DP controller). It only registers; each capability's
hook surface lives in its own folder. It must be idempotent.

Without our launcher's config in the environment (plain ``sglang serve``) the
config is passive: only additions that change nothing by themselves are made
(the version check, the ``arctic`` attention-backend choice), so SGLang
behaves exactly like vanilla SGLang.
"""

from __future__ import annotations

import multiprocessing

from sglang_arctic.compat import check_sglang_version, trace_plugin_load
from sglang_arctic.config import load_config


def _is_http_server_process() -> bool:
    # SGLang's HTTP server runs in the launching (parent-less) process; its
    # scheduler and detokenizer are spawned children.
    return multiprocessing.parent_process() is None


def register() -> None:
    check_sglang_version()
    trace_plugin_load()
    config = load_config()

    from sglang_arctic.attention import register_attention_backend

    register_attention_backend()

    from sglang_arctic.spec.suffix_algorithm import register_suffix_algorithm

    register_suffix_algorithm()

    from sglang_arctic.api.process_group import register_local_process_group

    register_local_process_group(config.local_process_group)

    from sglang_arctic.scheduling.hooks import register_scheduling_hooks

    register_scheduling_hooks(config)

    from sglang_arctic.reasoning.hooks import register_reasoning_hooks

    register_reasoning_hooks(config)

    if _is_http_server_process():
        from sglang_arctic import api

        api.install(config)
