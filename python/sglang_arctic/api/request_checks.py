"""Checks SGLang leaves to its scheduler, where a bad value crashes the process.

Hook surface (HTTP server process): ``TokenizerManager._validate_one_request``
runs ``check_generate_request`` first, and ``GenerateReqInput.normalize_batch_and_arguments``
turns the lookup errors malformed field combinations raise inside it into
``ValueError``; a ``ValueError`` is SGLang's own 400. Found by the fuzzing in
``test/reliability/test_abuse.py``.
"""

from __future__ import annotations

import functools


MULTIMODAL_FIELDS = ("input_embeds", "image_data", "video_data", "audio_data")


@functools.lru_cache(maxsize=None)
def keyword_names(field_name: str) -> frozenset[str]:
    """The keys SGLang's struct for ``field_name`` accepts (msgspec Struct fields)."""
    from sglang.srt.managers.io_struct import SessionParams
    from sglang.srt.sampling.sampling_params import SamplingParams

    struct = {"sampling_params": SamplingParams, "session_params": SessionParams}[field_name]
    return frozenset(struct.__struct_fields__)


def check_generate_request(obj, input_ids, vocab_size: int) -> None:
    # An empty prompt becomes a prefill of zero tokens, which fails inside
    # the model (rotary embedding reshape) and takes the scheduler down.
    if input_ids is not None and len(input_ids) == 0 and not any(
            getattr(obj, name, None) for name in MULTIMODAL_FIELDS):
        raise ValueError("The prompt is empty: send at least one token of text or input_ids.")
    # SGLang passes these dicts to a msgspec Struct as keywords: an unknown key
    # is a TypeError there, a 500.
    for field_name, label in (("sampling_params", "sampling parameter"), ("session_params", "session parameter")):
        params = getattr(obj, field_name, None)
        if params is None:
            continue
        if not isinstance(params, dict):
            raise ValueError(f"{field_name} must be an object.")
        unknown = sorted(str(k) for k in params if k not in keyword_names(field_name))
        if unknown:
            raise ValueError(f"Unknown {label}(s) {unknown}.")
    # An id outside the vocabulary fails in the embedding lookup (IndexError)
    # inside the scheduler.
    if input_ids is not None and any(not 0 <= t < vocab_size for t in input_ids):
        raise ValueError(f"input_ids must be token ids in [0, {vocab_size}).")
    top = getattr(obj, "top_logprobs_num", None)
    # A top-k wider than the vocabulary fails inside the sampler (torch.topk),
    # which takes the scheduler down with it.
    if isinstance(top, int) and not isinstance(top, bool) and not 0 <= top <= vocab_size:
        raise ValueError(f"top_logprobs_num must be in [0, {vocab_size}] (the vocabulary size), got {top}.")


def _install_normalize_guard() -> None:
    from sglang.srt.managers.io_struct import GenerateReqInput

    original = GenerateReqInput.normalize_batch_and_arguments
    if getattr(original, "arctic_checked", False):
        return

    def normalize_batch_and_arguments(self):
        try:
            return original(self)
        except (IndexError, KeyError, TypeError, AttributeError) as exc:
            # e.g. "sampling_params": [] fails on sampling_params[0]: a 500 before.
            raise ValueError(f"The request's fields do not fit together ({type(exc).__name__}: {exc}).") from exc

    normalize_batch_and_arguments.arctic_checked = True
    GenerateReqInput.normalize_batch_and_arguments = normalize_batch_and_arguments


def install() -> None:
    from sglang.srt.managers.tokenizer_manager import TokenizerManager

    _install_normalize_guard()

    original = TokenizerManager._validate_one_request
    if getattr(original, "arctic_checked", False):
        return

    def _validate_one_request(self, obj, input_ids):
        check_generate_request(obj, input_ids, self.model_config.vocab_size)
        return original(self, obj, input_ids)

    _validate_one_request.arctic_checked = True
    TokenizerManager._validate_one_request = _validate_one_request
