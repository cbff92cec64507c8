"""Our attention backend, ``--attention-backend arctic``.

CPU: batched torch SDPA with EXTEND, DECODE and TARGET_VERIFY (speculative
tree masks); CUDA: SGLang's flashinfer backend. See ``backend.py``.
"""

from __future__ import annotations

BACKEND_NAME = "arctic"


def _create(runner):
    # Imported lazily: the backend module pulls in SGLang's model-side code,
    # which processes that never build a model (detokenizer) do not need.
    from sglang_arctic.attention.backend import create_arctic_backend

    return create_arctic_backend(runner)


def register_attention_backend() -> None:
    """Register ``arctic`` with SGLang's attention registry and CLI choices.

    Idempotent: SGLang calls plugin ``register()`` in every process, and may
    call it more than once in one process.
    """
    from sglang.srt.arg_groups.choices import (
        ATTENTION_BACKEND_CHOICES,
        add_attention_backend_choices,
    )
    from sglang.srt.layers.attention.attention_registry import (
        ATTENTION_BACKENDS,
        register_attention_backend as sglang_register,
    )

    if ATTENTION_BACKENDS.get(BACKEND_NAME) is not _create:
        sglang_register(BACKEND_NAME)(_create)
    if BACKEND_NAME not in ATTENTION_BACKEND_CHOICES:
        add_attention_backend_choices([BACKEND_NAME])


__all__ = ["BACKEND_NAME", "register_attention_backend"]
