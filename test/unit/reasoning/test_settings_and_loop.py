"""Dynasor request parsing, the request-field middleware and the probe loop's
control flow against a scripted generator (the live path is tested in
test/server/test_dynasor.py)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Optional

import pytest

from sglang_arctic.config import ArcticConfig, ArcticConfigError
from sglang_arctic.reasoning.probe_loop import (
    PROBE_RID_MARK,
    ProbeLoop,
    final_answer_block,
    ineligible_reason,
    probe_parent_rid,
)
from sglang_arctic.reasoning.request_field import REQUESTED, UNSET, DynasorFieldMiddleware
from sglang_arctic.reasoning.settings import (
    SAVING_EFFORT_PRESETS,
    DynasorDefaults,
    DynasorRequestError,
    DynasorSettings,
    parse_request_object,
)

DEFAULTS = DynasorDefaults.from_config(ArcticConfig())


def test_presets_set_window_and_interval_and_explicit_keys_win():
    s = parse_request_object({"saving_effort": "mild"}, DEFAULTS)
    assert (s.certainty_window, s.probe_interval) == SAVING_EFFORT_PRESETS["mild"] == (8, 64)
    s = parse_request_object({"saving_effort": "crazy", "certainty_window": 4}, DEFAULTS)
    assert (s.certainty_window, s.probe_interval) == (4, 32)


def test_lab_key_names_and_shorthands():
    s = parse_request_object({"token_interval": 10, "probe_text": "so \\boxed{"}, DEFAULTS)
    assert s.probe_interval == 10 and s.probe_suffix == "so \\boxed{"
    assert parse_request_object(True, DEFAULTS) == DEFAULTS.settings
    for off in (None, False, {"enabled": False}):
        assert parse_request_object(off, DEFAULTS) is None
    assert parse_request_object({"probe_top_p": 1}, DEFAULTS).probe_top_p == 1.0


@pytest.mark.parametrize("bad", [
    "mid", 1, [], {"x": 1}, {"probe_interval": 0}, {"probe_interval": 2.5}, {"probe_interval": True},
    {"certainty_window": -1}, {"saving_effort": "max"}, {"probe_temperature": float("nan")},
    {"probe_top_p": 0}, {"probe_max_tokens": 0}, {"enabled": 1}, {"probe_suffix": ""},
], ids=repr)
def test_malformed_objects_are_rejected_with_the_reason(bad):
    with pytest.raises(DynasorRequestError, match="dynasor"):
        parse_request_object(bad, DEFAULTS)


def test_server_defaults_are_validated_at_startup():
    with pytest.raises(ArcticConfigError, match="--arctic-dynasor-certainty-window"):
        ArcticConfig(dynasor_certainty_window=0).validate()
    assert ArcticConfig.passive().dynasor_requests is False


def test_probe_rids_name_their_parent():
    assert probe_parent_rid(f"abc{PROBE_RID_MARK}3") == "abc"
    assert probe_parent_rid(f"a{PROBE_RID_MARK}x{PROBE_RID_MARK}0") == f"a{PROBE_RID_MARK}x"
    for rid in ("abc", f"{PROBE_RID_MARK}1", f"abc{PROBE_RID_MARK}", None, ["x"]):
        assert probe_parent_rid(rid) is None


def test_final_answer_block_closes_an_open_thinking_section_only():
    assert final_answer_block("42", None, "so").endswith("\\boxed{42} \\]")
    assert final_answer_block("42", "</think>", "thinking").startswith("\n</think>")
    assert "</think>" not in final_answer_block("42", "</think>", "a</think>b")


@dataclass
class FakeObj:
    text: object = "q"
    input_ids: object = None
    sampling_params: object = field(default_factory=lambda: {"max_new_tokens": 100})
    return_logprob: bool = False
    stream: bool = False
    rid: Optional[str] = None
    priority: Optional[int] = None
    return_prompt_token_ids: bool = False
    image_data: object = None


@pytest.mark.parametrize("change, reason", [
    ({"text": ["a", "b"]}, "batch"), ({"input_ids": [[1], [2]], "text": None}, "batch"),
    ({"sampling_params": {"n": 3}}, "n > 1"), ({"return_logprob": True}, "logprobs"),
    ({"sampling_params": {"regex": "a+"}}, "structured"), ({"image_data": "x.png"}, "multimodal"),
])
def test_ineligible_requests_are_named(change, reason):
    assert ineligible_reason(FakeObj()) is None
    assert reason in ineligible_reason(FakeObj(**change))


# -- the loop, against a scripted generate_request ------------------------------

class FakeTokenizer:
    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]


class FakeManager:
    incremental_streaming_output = False

    def __init__(self):
        self.tokenizer = FakeTokenizer()
        self.aborted: list[str] = []
        self.probes: list[list[int]] = []

    def abort_request(self, rid):
        self.aborted.append(rid)


def scripted_generate(answers, steps=40):
    """The main request emits token i at step i; probe k answers answers[k]."""

    async def generate(manager, obj, request):
        if PROBE_RID_MARK in obj.rid:
            manager.probes.append(list(obj.input_ids))
            k = int(obj.rid.rpartition(PROBE_RID_MARK)[2])
            yield {"text": f"{answers[min(k, len(answers) - 1)]}}} \\]", "output_ids": [0],
                   "meta_info": {"finish_reason": {"type": "length"}, "completion_tokens": 3,
                                 "prompt_tokens": len(obj.input_ids), "cached_tokens": len(obj.input_ids) - 5}}
            return
        ids = []
        for i in range(steps):
            ids.append(100 + i)
            await asyncio.sleep(0)  # let a probe task run between steps
            await asyncio.sleep(0)
            done = i == steps - 1
            yield {"text": "t" * len(ids), "output_ids": ids, "prompt_token_ids": [1, 2, 3],
                   "meta_info": {"finish_reason": {"type": "length"} if done else None,
                                 "completion_tokens": len(ids)}}

    return generate


def run_loop(answers, settings, steps=40, stream=False):
    manager = FakeManager()
    obj = FakeObj(stream=stream, rid="main")

    async def collect():
        loop = ProbeLoop(manager, scripted_generate(answers, steps), obj, None, settings, None)
        return [out async for out in loop.run()]

    return manager, asyncio.run(collect())


def test_agreeing_probes_stop_the_request_with_a_final_answer_block():
    settings = DynasorSettings(probe_interval=4, certainty_window=3)
    manager, outs = run_loop(["7", "7.0", "14/2"], settings)
    assert len(outs) == 1  # a non-streaming caller gets one output
    meta = outs[0]["meta_info"]
    assert meta["finish_reason"] == {"type": "stop", "matched": None}
    assert meta["dynasor"]["stopped_early"] and meta["dynasor"]["answers"] == ["7", "7.0", "14/2"]
    assert meta["dynasor"]["probe_positions"] == [4, 8, 12]
    assert outs[0]["text"].endswith("\\boxed{14/2} \\]")
    assert "main" in manager.aborted
    assert "prompt_token_ids" not in outs[0]
    # Probe k's prompt: the prompt, exactly the first 4(k+1) output ids, the suffix.
    suffix = FakeTokenizer().encode(settings.probe_suffix)
    assert manager.probes[1] == [1, 2, 3] + list(range(100, 108)) + suffix


def test_disagreeing_probes_let_the_request_finish():
    settings = DynasorSettings(probe_interval=4, certainty_window=2)
    _, outs = run_loop(["1", "2", "3", "4", "5", "6", "7", "8", "9"], settings)
    meta = outs[-1]["meta_info"]
    assert meta["finish_reason"] == {"type": "length"} and not meta["dynasor"]["stopped_early"]
    assert meta["dynasor"]["probes"] >= 5 and meta["completion_tokens"] == 40


def test_unfinished_probe_answers_never_count_as_agreement():
    settings = DynasorSettings(probe_interval=4, certainty_window=2)
    manager = FakeManager()

    async def generate(manager, obj, request):  # probes never close the box
        if PROBE_RID_MARK in obj.rid:
            yield {"text": "42 and", "output_ids": [0], "meta_info": {"finish_reason": {"type": "length"}}}
            return
        async for out in scripted_generate([], 30)(manager, obj, request):
            yield out

    async def collect():
        loop = ProbeLoop(manager, generate, FakeObj(rid="m"), None, settings, None)
        return [out async for out in loop.run()]

    outs = asyncio.run(collect())
    assert not outs[-1]["meta_info"]["dynasor"]["stopped_early"]


def test_streaming_caller_gets_every_chunk_then_the_block():
    settings = DynasorSettings(probe_interval=4, certainty_window=2)
    _, outs = run_loop(["5", "5"], settings, stream=True)
    assert len(outs) > 2
    assert "Final Answer" in outs[-1]["text"] and all("Final Answer" not in o["text"] for o in outs[:-1])
    assert outs[-1]["text"].startswith(outs[-2]["text"])


class _ASGI:
    def __init__(self):
        self.seen = None

    async def __call__(self, scope, receive, send):
        message = await receive()
        self.seen = (json.loads(message["body"]), REQUESTED.get(), dict(scope["headers"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def call_middleware(body: bytes, path="/generate"):
    app = _ASGI()
    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path,
             "headers": [(b"content-length", str(len(body)).encode())]}
    asyncio.run(DynasorFieldMiddleware(app, DEFAULTS)(scope, receive, send))
    return app.seen, sent[0]["status"], sent


def test_middleware_strips_the_field_and_passes_the_settings_on():
    seen, status, _ = call_middleware(json.dumps({"text": "hi", "dynasor": {"probe_interval": 9}}).encode())
    body, requested, headers = seen
    assert status == 200 and body == {"text": "hi"}
    assert requested.probe_interval == 9
    assert int(headers[b"content-length"]) == len(json.dumps(body).encode())


def test_middleware_leaves_other_bodies_alone_and_answers_400_on_malformed():
    seen, status, _ = call_middleware(b'{"text": "hi"}')
    assert status == 200 and seen[0] == {"text": "hi"} and seen[1] is UNSET
    seen, status, sent = call_middleware(b'{"text": "hi", "dynasor": {"probe_interval": -1}}',
                                         path="/v1/chat/completions")
    assert seen is None and status == 400
    assert b"probe_interval" in sent[1]["body"]


# -- Certaindex self-consistency ----------------------------------------------------

from sglang_arctic.reasoning.self_consistency import run_self_consistency  # noqa: E402
from sglang_arctic.reasoning.settings import CertaindexSettings, parse_certaindex_object  # noqa: E402


def test_certaindex_objects_parse_and_reject_with_the_reason():
    assert parse_certaindex_object(True) == CertaindexSettings()
    assert parse_certaindex_object({"max_samples": 6, "threshold": 1}).threshold == 1.0
    for bad in ({"max_samples": 1}, {"max_samples": 65}, {"wave_size": 0}, {"wave_size": 9},
                {"threshold": 1.5}, {"threshold": "high"}, {"waves": 2}, "yes", None):
        with pytest.raises(DynasorRequestError, match="certaindex"):
            parse_certaindex_object(bad)


def run_program(answers, settings):
    """Samples answer answers[0], answers[1], ... in order, one per sample."""
    waves = []

    async def generate(manager, obj, request):
        n = obj.sampling_params["n"]
        start = sum(waves)
        waves.append(n)
        yield [{"text": f"so \\boxed{{{a}}}", "meta_info": {}} for a in answers[start:start + n]]

    async def collect():
        return [out async for out in run_self_consistency(None, generate, FakeObj(sampling_params={
            "temperature": 0.7}), None, settings)]

    (outputs,) = asyncio.run(collect())
    return outputs, waves


def test_agreeing_samples_stop_after_the_first_certain_wave():
    outputs, waves = run_program(["4", "4.0", "4", "5", "6", "7"], CertaindexSettings(6, 2, 0.9))
    assert waves == [2] and len(outputs) == 2
    report = outputs[0]["meta_info"]["certaindex"]
    assert report["certaindex"] == 1.0 and report["answer"] == "4" and report["stopped_early"]


def test_disagreeing_samples_use_the_whole_budget_and_report_the_majority():
    answers = ["1", "2", "3", "3", "3", "4", "5"]
    outputs, waves = run_program(answers, CertaindexSettings(7, 3, 0.9))
    assert waves == [3, 3, 1] and len(outputs) == 7
    report = outputs[-1]["meta_info"]["certaindex"]
    assert report["answer"] == "3" and not report["stopped_early"]
    assert report["answers"] == answers and 0.0 < report["certaindex"] < 0.9
