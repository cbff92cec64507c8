"""Length scheduling on a real server (issue 3): queue order, starvation promotion,
the trace a deployment trains on, and clear start-up errors.

Every test keeps one request running (``--max-running-requests 1``) while the
others queue behind it, so the order in which the queued ones finish is the
order in which the scheduler admitted them. The oracle order is driven by a
trace file written here: its lengths are the test's input, so the expected
order is exact. Prompts are sent as token ids, whose digest is what a trace
keys prompts by.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from sglang_arctic.scheduling.features import NUM_FEATURES, RequestInfo, featurize
from sglang_arctic.scheduling.ranker import LengthRanker
from sglang_arctic.scheduling.scorers import DEFAULT_RANKER
from sglang_arctic.scheduling.trace import TraceRecord, prompt_digest, read_traces
from sglang_arctic.testing.server import launch_together, run_to_exit

QUEUED_TOKENS = 4  # each queued request's length: the order, not the work, is tested
BLOCKER_TOKENS = 40


def _ids(k: int) -> list[int]:
    """A distinct prompt of plain token ids per k."""
    return [1000 + 7 * k + j for j in range(12)]


def _oracle_trace(path, lengths: dict[int, int]) -> None:
    with open(path, "w") as f:
        for k, n in lengths.items():
            f.write(TraceRecord(
                rid=f"seed{k}", prompt_sha=prompt_digest(_ids(k)), feature_version=0,
                features=[], prompt_tokens=12, output_tokens=n, finish_reason="length",
                max_new_tokens=n, arrival_time=0.0, first_token_time=None, finish_time=0.0,
            ).to_json() + "\n")


def _start_blocker(url: str) -> threading.Thread:
    """A running request that holds the only slot; returns once it has produced a token."""
    started = threading.Event()

    def run():
        with requests.post(url + "/generate", stream=True, timeout=300, json={
            "input_ids": _ids(999), "stream": True,
            "sampling_params": {"max_new_tokens": BLOCKER_TOKENS, "ignore_eos": True, "temperature": 0},
        }) as r:
            for line in r.iter_lines():
                if line.startswith(b"data:"):
                    started.set()
        started.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(120), "the blocking request produced no token"
    return thread


def _finish_order(url: str, bodies: dict[str, dict]) -> list[str]:
    """Send every body at once (behind a blocker); the names in finishing order."""
    order, lock = [], threading.Lock()
    blocker = _start_blocker(url)

    def send(name, body):
        r = requests.post(url + "/generate", json=body, timeout=600)
        assert r.status_code == 200, r.text
        with lock:
            order.append(name)

    threads = [threading.Thread(target=send, args=item) for item in bodies.items()]
    for t in threads:
        t.start()
        time.sleep(0.05)  # distinct arrival order, all well inside the blocker's run
    for t in threads + [blocker]:
        t.join(600)
    return order


def _body(k: int, rid: str | None = None) -> dict:
    body = {"input_ids": _ids(k), "sampling_params": {
        "max_new_tokens": QUEUED_TOKENS, "ignore_eos": True, "temperature": 0}}
    if rid:
        body["rid"] = rid
    return body


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """The oracle server (exact expected orders) and the default ranker's,
    started together (they load in parallel)."""
    folder = tmp_path_factory.mktemp("oracle")
    _oracle_trace(folder / "oracle.jsonl", {1: 500, 2: 10, 3: 300, 4: 50, 5: 200,
                                            10: 5000, **{k: k for k in range(11, 17)}})
    trace = folder / "served.jsonl"
    # Starvation after 5 rounds: the 6-request order test ends before anyone
    # starves, and the 7-request starvation test does not.
    oracle, ranked = launch_together(
        ["--max-running-requests", "1", "--arctic-schedule", "oracle",
         "--arctic-schedule-oracle-trace", str(folder / "oracle.jsonl"),
         "--arctic-schedule-starvation-steps", "5",
         "--arctic-schedule-promotion-steps", "1",
         "--arctic-schedule-trace", str(trace)],
        ["--max-running-requests", "1", "--arctic-schedule", "ltr"])
    yield (oracle, trace), ranked
    alive = {"oracle": oracle.alive(), "ltr": ranked.alive()}
    oracle.stop()
    ranked.stop()
    assert all(alive.values()), (alive, oracle.log_tail(), ranked.log_tail())


@pytest.fixture(scope="module")
def oracle_server(servers):
    return servers[0]


def test_queued_requests_are_served_shortest_first_and_unknown_ones_fcfs(oracle_server):
    server, _ = oracle_server
    # Arrival order: 500, 10, unknown, 300, 50, 200 tokens (by the oracle's trace).
    bodies = {"500": _body(1), "10": _body(2), "unknown": _body(77), "300": _body(3),
              "50": _body(4), "200": _body(5)}
    order = _finish_order(server.base_url, bodies)
    # The request the trace does not know cannot be ranked: served first-come-
    # first-served (ahead of ranked ones), never dropped.
    assert order == ["unknown", "10", "50", "200", "300", "500"], order


def test_every_finished_request_is_traced_with_its_features_and_length(oracle_server):
    server, trace = oracle_server
    r = requests.post(server.base_url + "/generate", json=_body(3, rid="traced-one"), timeout=300)
    assert r.status_code == 200, r.text
    meta = r.json()["meta_info"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        records = {x.rid: x for x in read_traces([str(trace)])}
        if "traced-one" in records:
            break
        time.sleep(0.5)
    record = records["traced-one"]
    assert record.output_tokens == meta["completion_tokens"] == QUEUED_TOKENS
    assert record.prompt_tokens == meta["prompt_tokens"] == len(_ids(3))
    assert record.prompt_sha == prompt_digest(_ids(3))
    assert record.finish_reason == "length" and record.max_new_tokens == QUEUED_TOKENS
    assert len(record.features) == NUM_FEATURES
    assert record.arrival_time <= record.first_token_time <= record.finish_time
    # Every line of the file parses as a record (no partial or foreign lines).
    assert len(read_traces([str(trace)])) == len(trace.read_text().splitlines())


def test_starved_request_is_promoted(oracle_server):
    server, _ = oracle_server
    # The longest request arrives first, then six short ones.
    bodies = {"long": _body(10), **{f"s{k}": _body(k) for k in range(11, 17)}}
    order = _finish_order(server.base_url, bodies)
    # Ranked alone it would finish last. Each admission is one scheduling round;
    # passed over in rounds 1-5, it is promoted in round 6, ahead of s16.
    assert order.index("long") == 5, order
    assert [n for n in order if n != "long"] == [f"s{k}" for k in range(11, 17)], order


# The premise, asserted below: the shipped ranker scores these clearly apart.
SHORT_PROMPTS = (
    "Classify the topic of this text as one of: history, science, geography, arts, politics, "
    "other. Answer with one word.\n\nText: The Roman Empire fell in 476.",
    "Is the following text about sports? Answer yes or no only.\n\nText: The team won the "
    "final match 3-1.",
)
LONG_PROMPTS = (
    "Write a long, step-by-step tutorial with code examples explaining how to build a "
    "web server in Python, covering routing, templates, databases and deployment.",
    "Explain in detail how neural networks learn, with examples.",
)


def _chat(text: str) -> str:
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


def test_default_ranker_serves_predicted_short_requests_first(servers):
    ranker = LengthRanker.load(DEFAULT_RANKER)
    from transformers import AutoTokenizer

    from sglang_arctic.models.default_model import materialize

    tokenizer = AutoTokenizer.from_pretrained(str(materialize()))

    def score(text):
        return ranker.score_one(featurize(RequestInfo(
            prompt_text=_chat(text), prompt_tokens=len(tokenizer(_chat(text)).input_ids),
            max_new_tokens=QUEUED_TOKENS, temperature=0.0, num_stop=0)))

    # The premise: the shipped ranker separates these prompts clearly.
    assert min(map(score, SHORT_PROMPTS)) > max(map(score, LONG_PROMPTS))
    server = servers[1]
    bodies = {}
    # Long ones arrive first: FCFS would serve them first.
    for name, text in [("long0", LONG_PROMPTS[0]), ("long1", LONG_PROMPTS[1]),
                       ("short0", SHORT_PROMPTS[0]), ("short1", SHORT_PROMPTS[1])]:
        bodies[name] = {"text": _chat(text), "sampling_params": {
            "max_new_tokens": QUEUED_TOKENS, "ignore_eos": True, "temperature": 0}}
    order = _finish_order(server.base_url, bodies)
    assert server.alive(), server.log_tail()
    assert set(order[:2]) == {"short0", "short1"}, order


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_bad_ranker_file_is_a_startup_error(tmp_path, problem):
    path = tmp_path / "ranker.txt"
    if problem == "corrupt":
        path.write_text("this is not a LightGBM model\n")
    out = run_to_exit(["--arctic-schedule", "ltr", "--arctic-schedule-ranker", str(path)])
    assert out.returncode != 0
    assert str(path) in out.stderr and "ranker" in out.stderr.lower(), out.stderr[-2000:]
    assert "Traceback" not in out.stderr, out.stderr[-2000:]


def test_oracle_without_trace_is_a_startup_error():
    out = run_to_exit(["--arctic-schedule", "oracle"])
    assert out.returncode != 0 and "--arctic-schedule-oracle-trace" in out.stderr, out.stderr[-2000:]
