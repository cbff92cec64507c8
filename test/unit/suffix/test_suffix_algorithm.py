"""The SGLang-facing half of ARCTIC_SUFFIX without a server: NGRAM's draft
layout, the request bookkeeping, the context-length bound and the launcher
shorthand. The end-to-end checks are in test/server/test_spec_lossless_suffix.py."""

from __future__ import annotations

import numpy as np
import pytest

from sglang_arctic.config import ArcticConfig
from sglang_arctic.spec.suffix_algorithm import (
    ALGORITHM_NAME,
    SuffixDraftSource,
    SuffixSpecParams,
    pack_draft,
    speculative_args,
)


def _params(**overrides) -> SuffixSpecParams:
    return SuffixSpecParams.from_config(ArcticConfig(**overrides))


def test_pack_path_draft_matches_ngram_layout():
    tokens, mask = pack_draft(7, [1, 2, 3], [-1, 0, 1], width=6)
    assert tokens.tolist() == [7, 1, 2, 3, 0, 0]
    expected = np.array([
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 0, 0, 0, 1, 0],  # padding: a child of the root only
        [1, 0, 0, 0, 0, 1],
    ], dtype=bool)
    assert (mask == expected).all()


def test_pack_tree_draft_uses_parent_indices():
    # 7 -> a(1) -> c(3); 7 -> b(2)
    tokens, mask = pack_draft(7, [10, 20, 30], [-1, -1, 0], width=4)
    assert tokens.tolist() == [7, 10, 20, 30]
    assert mask[3].tolist() == [True, True, False, True]
    assert mask[2].tolist() == [True, False, True, False]


def test_pack_rejects_bad_drafts():
    with pytest.raises(ValueError, match="does not fit"):
        pack_draft(0, [1, 2, 3], [-1, 0, 1], width=3)
    with pytest.raises(ValueError, match="earlier token"):
        pack_draft(0, [1, 2], [1, -1], width=4)


def test_source_drafts_the_continuation_of_a_repeated_pattern():
    # the reference's budget rule and path drafts
    source = SuffixDraftSource(_params(suffix_max_spec_factor=1.0, suffix_max_spec_offset=0.0,
                                       suffix_tree_spec=False), width=5, max_context_len=1000)
    prompt = [1, 2, 3, 4, 5, 6, 1, 2, 3]
    tokens, mask = source.draft("r", prompt, [], may_draft=True)
    # match "1 2 3" (m = 3): budget floor(3 * 1.0 + 0) = 3 tokens
    assert tokens.tolist() == [3, 4, 5, 6, 0]
    assert mask.shape == (5, 5)
    # the defaults (factor 2.0, offset 4, tree): budget 10, capped by the width at 4; the
    # pattern has one continuation, so the tree is a path (it wraps around)
    wide = SuffixDraftSource(_params(), width=5, max_context_len=1000)
    assert wide.draft("r", prompt, [], may_draft=True)[0].tolist() == [3, 4, 5, 6, 1]
    # the committed output goes into the request's tree on the next draft
    tokens, _ = source.draft("r", prompt, [4, 5], may_draft=True)
    assert tokens[0] == 5 and tokens[1] == 6


def test_source_respects_gating_and_context_length():
    source = SuffixDraftSource(_params(), width=5, max_context_len=12)
    prompt = [1, 2, 3, 4, 5, 1, 2, 3, 4]
    tokens, _ = source.draft("gated", prompt, [], may_draft=False)
    assert tokens.tolist() == [4, 0, 0, 0, 0]
    # 9 prompt + 1 output tokens, context 12: at most 12 - 10 - 1 = 1 draft token
    tokens, mask = source.draft("near-end", prompt, [5], may_draft=True)
    assert tokens.tolist() == [5, 1, 0, 0, 0]
    assert mask[1].tolist() == [True, True, False, False, False]


def test_finished_requests_feed_the_global_tree():
    source = SuffixDraftSource(_params(), width=4, max_context_len=1000)
    source.draft("a", [9, 9], [40, 41, 42, 43], may_draft=True)
    source.erase_match_state(["a"])
    assert source.cache.active_requests == 0 or "a" not in source._tokens_in_tree
    # a new request whose context ends like a's response gets a's continuation
    tokens, _ = source.draft("b", [5, 40, 41], [], may_draft=True)
    assert tokens.tolist()[:3] == [41, 42, 43]


def test_launcher_shorthand():
    on = ArcticConfig(suffix_decoding=True)
    assert speculative_args(["--port", "1"], on)[-2:] == ["--speculative-algorithm", ALGORITHM_NAME]
    assert speculative_args(["--speculative-algorithm=arctic_suffix"], on) == [
        "--speculative-algorithm=arctic_suffix"
    ]
    with pytest.raises(SystemExit, match="conflicts"):
        speculative_args(["--speculative-algorithm", "NGRAM"], on)
    assert speculative_args(["--port", "1"], ArcticConfig()) == ["--port", "1"]


def test_config_validation_names_the_flag():
    from sglang_arctic.config import ArcticConfigError

    with pytest.raises(ArcticConfigError, match="--arctic-suffix-min-token-prob"):
        ArcticConfig(suffix_min_token_prob=1.5).validate()
    with pytest.raises(ArcticConfigError, match="--arctic-suffix-max-depth"):
        ArcticConfig(suffix_max_depth=0).validate()


def test_spec_class_answers_everything_sglang_asks_of_an_algorithm():
    from sglang.srt.speculative.spec_info import SpeculativeAlgorithm

    from sglang_arctic.spec.suffix_algorithm import _spec_class

    spec_class = _spec_class()
    enum_only = {"from_string", "register"}  # class-level API of the enum itself
    asked = {
        name for name, value in vars(SpeculativeAlgorithm).items()
        if callable(value) and not name.startswith("_") and name not in enum_only
    }
    assert sorted(n for n in asked if not hasattr(spec_class, n)) == []
    algo = spec_class("X", lambda server_args: None)
    assert algo.is_ngram() and not algo.has_draft_kv() and not algo.need_topk()


def test_default_verify_width_follows_the_device_cap():
    from sglang_arctic.spec.suffix_algorithm import default_verify_width

    config = ArcticConfig()
    assert default_verify_width(config, "cpu") == config.suffix_max_spec_tokens_cpu + 1 == 17
    assert default_verify_width(config, "cuda") == config.suffix_max_spec_tokens + 1 == 17
    narrow = ArcticConfig(suffix_max_spec_tokens_cpu=5)
    assert default_verify_width(narrow, "cpu") == 6 and default_verify_width(narrow, "cuda") == 17
