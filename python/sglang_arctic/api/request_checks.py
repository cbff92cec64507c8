"""Checks SGLang leaves to its scheduler, where a bad value crashes the process.

Hook surface: ``TokenizerManager._validate_one_request`` (HTTP server process)
runs ``check_generate_request`` first; its ``ValueError`` is SGLang's own 400.
Found by the fuzzing in ``test/reliability/test_abuse.py``.
"""

from __future__ import annotations


def check_generate_request(obj, vocab_size: int) -> None:
    top = getattr(obj, "top_logprobs_num", None)
    # A top-k wider than the vocabulary fails inside the sampler (torch.topk),
    # which takes the scheduler down with it.
    if isinstance(top, int) and not isinstance(top, bool) and not 0 <= top <= vocab_size:
        raise ValueError(f"top_logprobs_num must be in [0, {vocab_size}] (the vocabulary size), got {top}.")


def install() -> None:
    from sglang.srt.managers.tokenizer_manager import TokenizerManager

    original = TokenizerManager._validate_one_request
    if getattr(original, "arctic_checked", False):
        return

    def _validate_one_request(self, obj, input_ids):
        check_generate_request(obj, self.model_config.vocab_size)
        return original(self, obj, input_ids)

    _validate_one_request.arctic_checked = True
    TokenizerManager._validate_one_request = _validate_one_request
