"""SGLang's shipped test kits (`sglang.test.kits`), run against our server.

The kits are unittest mixins that read ``base_url``, ``process`` and ``model``
from the class; a class-scoped fixture binds a server to them. The
constrained-decoding kits run once per arctic feature in the matrix
(``sglang_arctic.testing.features.FEATURES``, shared with
test/reliability/test_abuse.py); a flag-list entry gets a server of its own,
started once for its classes. The timeout kits need
server-wide settings no shared server has: TestTimeouts starts its own.
"""

from __future__ import annotations

import json
import re
import unittest

import pytest
import requests
from sglang.test.kits.abort_timeout_kit import (
    AbortAllMixin,
    RunningTimeoutTwoWaveMixin,
    WaitingTimeoutMixin,
)
from sglang.test.kits.anthropic_messages_kit import AnthropicMessagesMixin
from sglang.test.kits.basic_api_contract_kit import BasicAPIContractMixin
from sglang.test.kits.ebnf_constrained_kit import EBNFConstrainedMixin
from sglang.test.kits.json_constrained_kit import JSONConstrainedMixin
from sglang.test.kits.matched_stop_kit import MatchedStopMixin
from sglang.test.kits.pause_generation_kit import PauseResumeInPlaceMixin
from sglang.test.kits.regex_constrained_kit import RegexConstrainedMixin

from sglang_arctic.testing.features import FEATURES
from sglang_arctic.testing.server import launch


def _bind(cls, server) -> None:
    cls.base_url = server.base_url
    cls.process = server.process
    model = requests.get(server.base_url + "/v1/models", timeout=30).json()
    cls.model = model["data"][0]["id"]
    cls.served_model_name = cls.model


@pytest.fixture(scope="class")
def bind_server(request, arctic_server):
    _bind(request.cls, arctic_server)
    yield
    assert arctic_server.alive(), arctic_server.log_tail()


@pytest.fixture(scope="module")
def own_feature_servers():
    """Servers of the FEATURES entries that are flag lists, started once for
    all their classes."""
    servers = {}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="class")
def bind_feature_server(request, own_feature_servers):
    """The server of the class's ``feature`` (an entry of FEATURES)."""
    feature = request.cls.feature
    entry = FEATURES[feature]
    if isinstance(entry, str):
        server = request.getfixturevalue(entry)
    else:
        if feature not in own_feature_servers:
            own_feature_servers[feature] = launch(entry, timeout=300)
        server = own_feature_servers[feature]
    _bind(request.cls, server)
    yield
    assert server.alive(), server.log_tail()


def per_feature(mixin, name: str) -> None:
    """Define ``{name}_{feature}``, a test class of ``mixin`` bound to that
    feature's server, for every feature in FEATURES (unittest classes cannot
    take parametrized fixtures)."""
    for feature in FEATURES:
        cls_name = name + "_" + re.sub(r"\W", "_", feature)
        cls = type(cls_name, (mixin, unittest.TestCase), {"feature": feature, "__module__": __name__})
        globals()[cls_name] = pytest.mark.usefixtures("bind_feature_server")(cls)


# -- default server -----------------------------------------------------------


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


@pytest.mark.usefixtures("bind_server")
class TestAbortAll(AbortAllMixin, unittest.TestCase):
    # The kit's 16000 exceeds the model's 8192-token context (a 400, not a
    # request to abort); 4000 fits and is far more than 2 s of decoding.
    abort_all_max_new_tokens = 4000


@pytest.mark.usefixtures("bind_server")
class TestPauseResumeInPlace(PauseResumeInPlaceMixin, unittest.TestCase):
    # Without a chat template the 135M model often answers the kit's prompt
    # with EOS at once (seen: 18 of 32 empty texts, which the kit rejects), so
    # every request generates its full length. 8 x 128 tokens (not 32 x 512):
    # still far from done 1.5 s in on CPU, and done in ~10 s after resuming.
    pause_ignore_eos = True
    pause_num_requests = 8
    pause_max_new_tokens = 128


@pytest.mark.usefixtures("bind_server")
class TestAnthropicMessages(AnthropicMessagesMixin, unittest.TestCase):
    api_key = "EMPTY"  # the server has no --api-key: any bearer token passes

    def test_count_tokens_with_system(self):
        # The kit expects a system prompt to add tokens to a request without
        # one. SmolLM2's chat template puts its own system prompt in when none
        # is given, longer than the kit's (seen: 31 tokens without, 30 with).
        # Same contract, that the system message is counted: a longer system
        # prompt counts more tokens than a shorter one.
        def count(system):
            resp = requests.post(
                self.anthropic_base_url + "/v1/messages/count_tokens",
                headers={"Authorization": f"Bearer {self.api_key}"},
                json={"model": self.model, "system": system,
                      "messages": [{"role": "user", "content": "Hello"}]},
                timeout=60,
            )
            self.assertEqual(resp.status_code, 200, resp.text)
            return resp.json()["input_tokens"]

        short = count("Be brief.")
        long = count("You are a helpful assistant with a very long system prompt that adds tokens.")
        self.assertGreater(long, short, "a longer system message should count more tokens")


# -- waiting and running timeouts: a server of their own ------------------------
# The timeouts are server-wide settings (no request can ask for its own) and
# the waiting timeout needs a full running batch, so no shared server fits:
# at most 4 running requests, a queued one times out at once, a running one
# after 8 s.
TIMEOUT_FLAGS = ["--max-running-requests", "4", "--arctic-queue-timeout", "0.001"]
TIMEOUT_ENV = {"SGLANG_REQ_RUNNING_TIMEOUT": "8"}


@pytest.fixture(scope="class")
def bind_timeout_server(request):
    server = launch(TIMEOUT_FLAGS, env=TIMEOUT_ENV, timeout=300)
    _bind(request.cls, server)
    yield
    alive = server.alive()
    server.stop()
    assert alive, server.log_tail()


@pytest.mark.usefixtures("bind_timeout_server")
class TestTimeouts(WaitingTimeoutMixin, RunningTimeoutTwoWaveMixin, unittest.TestCase):
    # Waiting: 4 requests fill the running batch and the 5th times out (the
    # kit's 1-slot server and 2 requests, with the 4 slots the running test
    # needs); 64 tokens keep the 4 running well inside the running timeout.
    waiting_timeout_num_requests = 5
    waiting_timeout_max_new_tokens = 64
    # Running: two waves of 2 (the kit's 8 + 8 need 16 slots), each timed
    # out in a batch of its own, 3 s apart.
    running_timeout_num_wave1 = 2
    running_timeout_num_wave2 = 2


# -- constrained decoding, on every feature server ----------------------------

# A grammar does not make a model end its output: where it allows an endless
# run, the 135M model takes it until max_new_tokens cuts the output off
# unfinished. The overrides below bound such runs and otherwise send the kits'
# own requests (read from the kit at run time) and make the kits' checks, but
# one, whose expected pattern is brought in line with its own grammar.


def kit_call(case, test, runner: str) -> dict:
    """The keyword arguments the kit's ``test`` passes to its ``runner`` method
    (the request it would send), without sending it."""
    calls = []
    setattr(case, runner, lambda **kwargs: calls.append(kwargs))
    try:
        test(case)
    finally:
        delattr(case, runner)
    (call,) = calls
    return call


def bound_word(call: dict, *keys: str) -> dict:
    """``call`` with the kit's endless ``[a-z]+`` word bounded to 16 letters
    in each of ``keys`` (a string, or a list of strings)."""
    def bound(text: str) -> str:
        assert "[a-z]+" in text, text  # the kit changed: review the override
        return text.replace("[a-z]+", "[a-z]{1,16}")

    for key in keys:
        value = call[key]
        call[key] = [bound(v) for v in value] if isinstance(value, list) else bound(value)
    return call


def bounded_json_schema() -> str:
    schema = json.loads(JSONConstrainedMixin.json_schema)
    schema["properties"]["population"].update(minimum=0, maximum=10**10)
    return json.dumps(schema)


class JSONConstrained(JSONConstrainedMixin):
    # The kit's schema with the population bounded: unbounded, the model writes
    # "population": 1000000... for all 128 tokens (seen on every server).
    json_schema = bounded_json_schema()


class RegexConstrained(RegexConstrainedMixin):
    def test_regex_generate_custom_log_format(self):
        # [a-z]{1,16}, not the kit's [a-z]+: sampled at temperature 0.5 the
        # model may spell one endless word (seen: "Operation xtljfjfjfj..."
        # for all 128 tokens).
        call = kit_call(self, RegexConstrainedMixin.test_regex_generate_custom_log_format,
                        "_run_decode_regex")
        self._run_decode_regex(**bound_word(call, "regex"))


# What the kit's complex-JSON grammar accepts, as a regex: any number of
# name/age/city pairs, in any order.
_STRING, _NUMBER = r'"[a-zA-Z0-9 ]+"', r"[1-9][0-9]*"
_PAIR = rf'(?:"name" *: *(?:{_STRING}|{_NUMBER})|"age" *: *{_NUMBER}|"city" *: *{_STRING})'
COMPLEX_JSON_LANGUAGE = rf"^\{{ *{_PAIR}(?: *, *{_PAIR})* *\}}$"


class EBNFConstrained(EBNFConstrainedMixin):
    def test_ebnf_generate_custom_log_format(self):
        # [a-z]{1,16}, not the kit's [a-z]+ (see RegexConstrained).
        call = kit_call(self, EBNFConstrainedMixin.test_ebnf_generate_custom_log_format,
                        "_run_decode_ebnf")
        self._run_decode_ebnf(**bound_word(call, "ebnf", "expected_patterns"))

    def test_ebnf_generate_complex_json(self):
        # The kit's grammar, checked against its own language. The kit checks
        # for exactly name, age and city in that order, which its grammar does
        # not ask for (any number of pairs, in any order): a model that does
        # not add the city on its own fails it with grammatical output (seen:
        # '{"name": "New York", "age": 30}', 2 runs in 8).
        call = kit_call(self, EBNFConstrainedMixin.test_ebnf_generate_complex_json,
                        "_run_decode_ebnf")
        call["expected_patterns"] = [COMPLEX_JSON_LANGUAGE]
        self._run_decode_ebnf(**call)


per_feature(JSONConstrained, "TestJSONConstrained")
per_feature(RegexConstrained, "TestRegexConstrained")
per_feature(EBNFConstrained, "TestEBNFConstrained")
