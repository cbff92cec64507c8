"""SGLang's shipped test kits (`sglang.test.kits`), run against our server."""

from __future__ import annotations

import unittest

import pytest
import requests
from sglang.test.kits.basic_api_contract_kit import BasicAPIContractMixin
from sglang.test.kits.matched_stop_kit import MatchedStopMixin


@pytest.fixture(scope="class")
def bind_server(request, arctic_server):
    request.cls.base_url = arctic_server.base_url
    request.cls.process = arctic_server.process
    model = requests.get(arctic_server.base_url + "/v1/models", timeout=30).json()
    request.cls.model = model["data"][0]["id"]
    request.cls.served_model_name = request.cls.model


@pytest.mark.usefixtures("bind_server")
class TestBasicAPIContract(BasicAPIContractMixin, unittest.TestCase):
    pass


@pytest.mark.usefixtures("bind_server")
class TestMatchedStop(MatchedStopMixin, unittest.TestCase):
    def test_finish_stop_str(self):
        # The kit stops on "\n" and assumes the model writes a newline within
        # 1000 tokens; the 135M model may write one endless paragraph instead
        # (seen: 1000 tokens, no newline). The stop-string contract is the same
        # with a string every English reply contains, matched mid-token.
        self._run_completions_generation(
            max_tokens=1000, stop="e", finish_reason="stop", matched_stop="e"
        )
        self._run_chat_completions_generation(
            max_tokens=1000, stop="e", finish_reason="stop", matched_stop="e"
        )

    def test_finish_stop_eos(self):
        # The kit hard-codes a Llama-3 prompt and EOS ids; SmolLM2 speaks ChatML
        # and its EOS is <|im_end|> (id 2).
        chatml_prompt = (
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nWhat is 2 + 2? Answer with one number.<|im_end|>\n"
            "<|im_start|>assistant\n"
        )
        self._run_completions_generation(
            prompt=chatml_prompt, max_tokens=200, finish_reason="stop", matched_stop=2
        )
        self._run_chat_completions_generation(
            prompt="What is 2 + 2? Answer with one number.",
            max_tokens=200,
            finish_reason="stop",
            matched_stop=2,
        )
