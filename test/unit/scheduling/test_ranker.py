"""Length ranker: labels, the file format and its checks, scoring and its cost."""

from __future__ import annotations

import json
import re
import statistics
import time

import lightgbm as lgb
import numpy as np
import pytest

from sglang_arctic.scheduling.features import (
    FEATURE_NAMES,
    FEATURE_VERSION,
    NUM_FEATURES,
    feature_index,
)
from sglang_arctic.scheduling.ranker import (
    HEADER_PREFIX,
    MAX_LABEL,
    LengthRanker,
    RankerError,
    length_bucket,
    relevance_label,
)

ESSAY = feature_index("cue_essay")


def _booster(names=FEATURE_NAMES, rounds: int = 20, rows: int = 640, seed: int = 0) -> lgb.Booster:
    """A LambdaRank model on random features where cue_essay means long."""
    rng = np.random.default_rng(seed)
    x = rng.random((rows, len(names)))
    essay = rng.random(rows) < 0.5
    if len(names) > ESSAY:
        x[:, ESSAY] = essay
    outputs = np.where(essay, 800, 5) * rng.uniform(0.7, 1.4, rows)
    labels = [relevance_label(int(n)) for n in outputs]
    data = lgb.Dataset(x, label=labels, group=[32] * (rows // 32), feature_name=list(names),
                       params={"verbose": -1})
    params = {"objective": "lambdarank", "num_leaves": 15, "min_data_in_leaf": 5,
              "label_gain": list(range(MAX_LABEL + 1)), "verbose": -1, "num_threads": 1,
              "deterministic": True, "force_row_wise": True}
    return lgb.train(params, data, num_boost_round=rounds)


@pytest.fixture(scope="module")
def ranker() -> LengthRanker:
    return LengthRanker(_booster())


@pytest.mark.parametrize(
    "tokens,bucket",
    [(0, 0), (1, 0), (2, 2), (3, 3), (4, 4), (6, 5), (8, 6), (1024, 20), (2048, 22),
     (10**9, 30)],
)
def test_length_bucket_is_half_octaves(tokens, bucket):
    assert length_bucket(tokens) == bucket


def test_labels_are_monotone_higher_for_shorter_and_in_range():
    labels = [relevance_label(n) for n in range(0, 5000)]
    assert labels[0] == labels[1] == MAX_LABEL
    assert all(a >= b for a, b in zip(labels, labels[1:]))
    assert min(labels) >= 0 and max(labels) <= 30
    assert relevance_label(10) > relevance_label(100) > relevance_label(1000)


@pytest.mark.parametrize("bad", [-1, 2.5, True])
def test_length_bucket_names_a_bad_count(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        length_bucket(bad)


def test_save_load_round_trip_scores_identically(ranker, tmp_path):
    path = tmp_path / "ranker.txt"
    size = ranker.save(path)
    assert size == path.stat().st_size
    assert path.read_text().startswith(HEADER_PREFIX)
    loaded = LengthRanker.load(path)
    x = np.random.default_rng(1).random((10, NUM_FEATURES)).astype(np.float32)
    assert np.allclose(loaded.score(x), ranker.score(x))
    assert loaded.header["feature_version"] == FEATURE_VERSION


def test_higher_score_means_shorter_output(ranker):
    x = np.full((2, NUM_FEATURES), 0.5, dtype=np.float32)
    x[0, ESSAY], x[1, ESSAY] = 0.0, 1.0  # row 0: short, row 1: essay (long)
    scores = ranker.score(x)
    assert scores[0] > scores[1]


def test_score_one_matches_score_and_shapes_are_checked(ranker):
    x = np.random.default_rng(2).random((3, NUM_FEATURES)).astype(np.float32)
    x[2, 5] = np.nan  # missing values take the trees' default branch in both paths
    batch = ranker.score(x)
    assert [ranker.score_one(row) for row in x] == pytest.approx(list(batch), rel=1e-12)
    assert ranker.score(np.zeros((0, NUM_FEATURES))).shape == (0,)
    with pytest.raises(ValueError, match=str(NUM_FEATURES)):
        ranker.score(np.zeros((2, NUM_FEATURES - 1)))
    with pytest.raises(ValueError, match=str(NUM_FEATURES)):
        ranker.score_one(np.zeros(NUM_FEATURES + 1))


def test_load_missing_file(tmp_path):
    path = tmp_path / "absent.txt"
    with pytest.raises(RankerError, match=re.escape(f"{path}: no such file")):
        LengthRanker.load(path)


def test_load_a_directory_is_unreadable(tmp_path):
    with pytest.raises(RankerError, match="cannot read"):
        LengthRanker.load(tmp_path)


def test_load_garbage(tmp_path):
    path = tmp_path / "garbage.txt"
    path.write_bytes(b"\x00\x01garbage\nmore")
    with pytest.raises(RankerError, match=re.escape(str(path)) + ".*not a length-ranker file"):
        LengthRanker.load(path)


def test_load_header_with_a_garbage_model(tmp_path):
    path = tmp_path / "bad.txt"
    header = json.dumps({"feature_version": FEATURE_VERSION})
    path.write_text(f"{HEADER_PREFIX}{header}\nthis is not a tree model\n")
    with pytest.raises(RankerError, match="not a LightGBM model"):
        LengthRanker.load(path)


def test_load_plain_lightgbm_model_without_header(tmp_path):
    path = tmp_path / "plain.txt"
    _booster(rounds=2).save_model(str(path))
    with pytest.raises(RankerError, match="plain LightGBM model"):
        LengthRanker.load(path)


def test_load_other_feature_version(ranker, tmp_path):
    path = tmp_path / "old.txt"
    text = ranker.to_string().replace(f'"feature_version": {FEATURE_VERSION}',
                                      f'"feature_version": {FEATURE_VERSION + 7}', 1)
    path.write_text(text)
    with pytest.raises(RankerError, match=f"feature version {FEATURE_VERSION + 7}"):
        LengthRanker.load(path)


def test_load_model_trained_on_another_feature_count(tmp_path):
    names = [f"f{i}" for i in range(NUM_FEATURES - 5)]
    header = json.dumps({"feature_version": FEATURE_VERSION})
    path = tmp_path / "short.txt"
    path.write_text(f"{HEADER_PREFIX}{header}\n" + _booster(names, rounds=2).model_to_string())
    with pytest.raises(RankerError, match=f"uses {NUM_FEATURES - 5} features.*{NUM_FEATURES}"):
        LengthRanker.load(path)


def test_load_model_with_renamed_features(tmp_path):
    names = list(FEATURE_NAMES)
    names[3] = "something_else"
    header = json.dumps({"feature_version": FEATURE_VERSION})
    path = tmp_path / "renamed.txt"
    path.write_text(f"{HEADER_PREFIX}{header}\n" + _booster(names, rounds=2).model_to_string())
    with pytest.raises(RankerError, match="feature 3 is named 'something_else'"):
        LengthRanker.load(path)


def test_score_one_is_cheap():
    """A model of the size train_ranker writes by default (100 trees, 15 leaves)."""
    big = LengthRanker(_booster(rounds=100, rows=2048))
    assert big.uses_fast_path
    vec = np.random.default_rng(3).random(NUM_FEATURES).astype(np.float32)
    big.score_one(vec)
    times = []
    for _ in range(200):
        start = time.perf_counter()
        big.score_one(vec)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"score_one (100 trees x 15 leaves): median {median * 1e6:.0f} us")
    assert median < 1e-3


def test_score_one_falls_back_to_booster_predict(monkeypatch, ranker):
    """Where lightgbm's library handle is not reachable, scores are the same."""
    from sglang_arctic.scheduling import ranker as ranker_module

    monkeypatch.setattr(ranker_module._SingleRowScorer, "create", classmethod(lambda cls, text: None))
    slow = LengthRanker(ranker.booster)
    assert not slow.uses_fast_path
    x = np.random.default_rng(4).random((2, NUM_FEATURES)).astype(np.float32)
    assert [slow.score_one(row) for row in x] == pytest.approx([ranker.score_one(row) for row in x])
