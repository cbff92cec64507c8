"""Certaindex for multi-path reasoning: self-consistency with an adaptive
sample count (native ``/generate``, ``"certaindex": {...}``).

A request asks for up to ``max_samples`` samples of one prompt. They run in
waves of ``wave_size``, each wave one SGLang request with ``n`` = wave size:
SGLang prefills the shared prompt once and decodes the wave's samples
together, and later waves find the prompt in the radix cache. After each wave
the normalized answer-entropy Certaindex of every answer so far decides: at
or above ``threshold`` (with at least two samples) the program stops.

The response is the list of every sample used (as ``/generate`` answers for
``n`` > 1); each sample's ``meta_info.certaindex`` carries the majority
answer, the Certaindex, the answers and the sample and wave counts.
"""

from __future__ import annotations

import copy
from typing import AsyncIterator, Callable, Optional

from sglang_arctic.reasoning.answers import final_answer, majority_answer
from sglang_arctic.reasoning.certainty import certaindex
from sglang_arctic.reasoning.probe_loop import is_batch
from sglang_arctic.reasoning.settings import CertaindexSettings


def ineligible_reason(obj) -> Optional[str]:
    """Why a request cannot be a self-consistency program, or None."""
    if is_batch(obj):
        return "a batch of prompts"
    if (obj.sampling_params or {}).get("n") not in (None, 1):
        return "n (the sample count is certaindex.max_samples)"
    return None  # streaming is refused by the request-field middleware


async def run_self_consistency(manager, generate: Callable[..., AsyncIterator], obj, request,
                               settings: CertaindexSettings) -> AsyncIterator[list[dict]]:
    outputs: list[dict] = []
    answers: list[str] = []
    waves, index = 0, 0.0
    params = dict(obj.sampling_params or {})
    while len(outputs) < settings.max_samples:
        wave = copy.copy(obj)
        wave.sampling_params = {**params, "n": min(settings.wave_size, settings.max_samples - len(outputs))}
        wave.rid = None  # SGLang names the samples of each wave
        result = None
        async for result in generate(manager, wave, request):
            pass
        samples = result if isinstance(result, list) else [result]
        outputs.extend(samples)
        answers.extend(final_answer(sample.get("text") or "") for sample in samples)
        waves += 1
        index = certaindex(answers)
        if len(answers) >= 2 and index >= settings.threshold:
            break
    report = {
        "answer": majority_answer(answers),
        "certaindex": index,
        "answers": answers,
        "samples": len(outputs),
        "waves": waves,
        "stopped_early": len(outputs) < settings.max_samples,
    }
    for sample in outputs:
        sample["meta_info"]["certaindex"] = report
    yield outputs
