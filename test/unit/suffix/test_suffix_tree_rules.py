"""Rules of the native suffix tree (arctic_sgl_kernel._suffix_tree), one by one.

Numbers in the expectations are worked out by hand from the counts; the
randomized comparison with the pure-Python model is in test_suffix_randomized.py.
"""

from __future__ import annotations

import pytest

from sglang_arctic.spec.suffix_tree import SuffixTree


def make_tree(max_depth: int, *seqs: list[int]) -> SuffixTree:
    tree = SuffixTree(max_depth)
    for seq_id, seq in enumerate(seqs):
        tree.extend(seq_id, seq)
    assert tree.check_integrity() == ""
    return tree


def test_append_builds_suffixes_with_counts():
    tree = make_tree(8, [1, 2, 1, 2, 3])
    assert tree.num_seqs() == 1 and tree.seq_len(0) == 5
    # "1 2" occurs twice: continuation 1 (prob 1/2) ... the most frequent child of
    # "2" is tied (1 and 3 once each); 1 reached count 1 first, so it leads.
    draft = tree.speculate([1, 2], max_spec_tokens=1, min_token_prob=0.0)
    assert draft.token_ids == [1] and draft.probs == [0.5] and draft.match_len == 1


def test_path_compression_keeps_one_leaf_per_distinct_suffix():
    # All tokens distinct: an uncompressed trie needs n(n+1)/2 nodes, the
    # compressed tree one leaf per suffix plus the root.
    n = 40
    tree = make_tree(64, list(range(n)))
    assert tree.num_nodes() == n + 1
    # A second sequence 0 1 2 99 splits three edges after their first
    # tokens ("0 1 2", "1 2", "2" become internal nodes) and adds four
    # leaves "99" (under each of them and under the root).
    tree.extend(1, [0, 1, 2, 99])
    assert tree.check_integrity() == ""
    assert tree.num_nodes() == n + 1 + 3 + 4


def test_max_depth_cuts_suffixes_and_context():
    tree = make_tree(8, list(range(100)))
    # A suffix holds at most 8 tokens: after matching "12" (the suffix 12..19),
    # 7 remain; after "11 12" only 6, so the shorter match wins.
    draft = tree.speculate([10, 11, 12], max_spec_tokens=50, max_spec_factor=100.0)
    assert draft.match_len == 1 and draft.token_ids == list(range(13, 20))
    # Only the last max_depth context tokens are matched, and never all of
    # them: the 555s are ignored, the longest match is 7 tokens (every match
    # drafts just "9", so the tie goes to the longest).
    tree = make_tree(8, list(range(1, 10)))
    draft = tree.speculate([555] * 12 + list(range(1, 9)), max_spec_tokens=50)
    assert draft.match_len == 7 and draft.token_ids == [9]


def test_max_depth_one_stores_single_tokens():
    tree = make_tree(1, [1, 2, 1, 3])
    assert tree.num_nodes() == 4  # root + 1, 2, 3
    # Context windows of one token leave no match length below len(context).
    assert tree.speculate([1], 4).token_ids == []


@pytest.mark.parametrize(
    ("factor", "offset", "max_spec", "expected_len", "expected_match"),
    [
        (1.0, 0.0, 16, 3, 3),  # budgets 1, 2, 3
        (0.5, 1.0, 16, 2, 3),  # floor(1.5)=1, floor(2)=2, floor(2.5)=2: tie -> longer match
        (2.0, 0.0, 2, 2, 3),  # max_spec_tokens caps every budget
        (1.0, -2.5, 16, 0, 3),  # all budgets 0: empty draft, still the longest match
        (0.0, 4.0, 16, 4, 3),  # offset alone
    ],
)
def test_budget_rule(factor, offset, max_spec, expected_len, expected_match):
    tree = make_tree(64, list(range(50)))
    # Matches of length 1, 2, 3 ("9", "8 9", "7 8 9"); 4 fails on the 100.
    draft = tree.speculate([100, 7, 8, 9], max_spec, factor, offset)
    assert draft.match_len == expected_match
    assert draft.token_ids == list(range(10, 10 + expected_len))
    assert draft.score == float(expected_len)


def test_budget_floor_tolerates_rounding():
    assert 25 * 1.16 < 29  # 28.999999999999996 in binary floating point
    tree = make_tree(64, list(range(100)))
    draft = tree.speculate([1000] + list(range(25)), 64, max_spec_factor=1.16)
    assert draft.match_len == 25 and len(draft.token_ids) == 29


def branching_tree() -> SuffixTree:
    # After "7 1": "2" twice, "3" once; after "7 1 2": "4" and "5" once each.
    return make_tree(64, [7, 1, 2, 4], [7, 1, 2, 5], [7, 1, 3, 6])


# Budgets of a few tokens even for one matched token.
WIDE = 8.0


def test_path_probabilities_and_min_token_prob():
    tree = branching_tree()
    draft = tree.speculate([7, 1], 8, WIDE, min_token_prob=0.5)
    assert draft.token_ids == [2] and draft.probs == [pytest.approx(2 / 3)]
    assert draft.parents == [-1]
    draft = tree.speculate([7, 1], 8, WIDE, min_token_prob=0.3)
    # Tie between 4 and 5: 4 reached count 1 first.
    assert draft.token_ids == [2, 4]
    assert draft.probs == [pytest.approx(2 / 3), pytest.approx(1 / 3)]
    assert draft.parents == [-1, 0]
    assert draft.score == pytest.approx(1.0)
    assert draft.match_len == 1  # m < len(context): "7 1" itself is not tried
    # "1" and "7 1" give the same draft; the tie goes to the longer match.
    draft = tree.speculate([0, 7, 1], 8, WIDE, min_token_prob=0.3)
    assert draft.match_len == 2 and draft.token_ids == [2, 4]


def test_tree_mode_is_best_first_with_parent_indices():
    tree = branching_tree()
    draft = tree.speculate([0, 7, 1], 4, WIDE, min_token_prob=0.1, use_tree_spec=True)
    # Pop 2 (2/3); push 4, 5 (1/3 each, after 3 which was pushed first).
    assert draft.token_ids == [2, 3, 4, 5]
    assert draft.parents == [-1, -1, 0, 0]
    assert draft.probs == pytest.approx([2 / 3, 1 / 3, 1 / 3, 1 / 3])
    assert draft.score == pytest.approx(5 / 3)
    # min_token_prob prunes whole branches.
    draft = tree.speculate([0, 7, 1], 4, WIDE, min_token_prob=0.5, use_tree_spec=True)
    assert draft.token_ids == [2] and draft.parents == [-1]
    # With room, the tree holds every continuation: 2, 3, then 4, 5, 6.
    draft = tree.speculate([0, 7, 1], 16, WIDE, min_token_prob=0.1, use_tree_spec=True)
    assert draft.token_ids == [2, 3, 4, 5, 6]
    assert draft.parents == [-1, -1, 0, 0, 1]


def test_most_frequent_child_follows_count_changes():
    tree = SuffixTree(4)
    tree.extend(0, [1, 2])
    tree.extend(1, [1, 3])
    assert tree.speculate([0, 1], 1, min_token_prob=0.0).token_ids == [2]  # tie: 2 first
    tree.extend(2, [1, 3])
    assert tree.speculate([0, 1], 1, min_token_prob=0.0).token_ids == [3]  # 3 counts 2
    tree.extend(3, [1, 2])
    assert tree.speculate([0, 1], 1, min_token_prob=0.0).token_ids == [3]  # tie: 3 got there first
    tree.remove(2)
    assert tree.speculate([0, 1], 1, min_token_prob=0.0).token_ids == [2]  # 3 back to 1
    tree.remove(0)
    # 2 and 3 tie at 1 again; 2 went down to 1 last, so it goes first of that run.
    assert tree.speculate([0, 1], 1, min_token_prob=0.0).token_ids == [2]
    assert tree.check_integrity() == ""


def test_many_children_use_the_index_and_stay_ordered():
    tree = SuffixTree(3)
    for seq_id in range(50):
        tree.extend(seq_id, [7, 100 + seq_id])
    tree.extend(100, [7, 142])
    tree.extend(101, [7, 142])
    assert tree.check_integrity() == ""
    draft = tree.speculate([0, 7], 1, min_token_prob=0.0)
    assert draft.token_ids == [142] and draft.probs == [pytest.approx(3 / 52)]
    for seq_id in [100, 101, *range(50)]:
        tree.remove(seq_id)
        assert tree.check_integrity() == ""
    assert tree.num_nodes() == 1


def test_remove_restores_the_tree_of_the_others():
    tree = make_tree(4, [5, 6, 7, 5, 6, 8], [6, 7, 9])
    nodes_before = tree.num_nodes()
    tree.extend(2, [5, 6, 7, 5, 6, 7, 5, 6, 9, 9, 9])
    assert tree.check_integrity() == ""
    assert tree.num_nodes() > nodes_before
    tree.remove(2)
    assert tree.check_integrity() == ""
    # Merging after removal gives back the same compressed structure.
    assert tree.num_nodes() == nodes_before
    # Removing the sequence that most edges read their tokens from repoints them.
    tree.remove(0)
    assert tree.check_integrity() == ""
    assert tree.speculate([0, 6, 7], 8).token_ids == [9]
    tree.remove(1)
    assert tree.num_nodes() == 1 and tree.num_seqs() == 0


def test_removed_content_is_no_longer_proposed():
    tree = make_tree(16, [1, 2, 3, 4, 5], [9, 9, 9])
    assert tree.speculate([0, 1, 2], 8, max_spec_factor=10.0).token_ids == [3, 4, 5]
    tree.remove(0)
    assert tree.speculate([0, 1, 2], 8, max_spec_factor=10.0).token_ids == []
    with pytest.raises(ValueError, match="unknown sequence"):
        tree.remove(0)


def test_integrity_check_on_periodic_sequences():
    # Periodic input makes several suffixes of one sequence meet at one node.
    tree = SuffixTree(5)
    tree.extend(0, [1] * 30)
    tree.extend(1, [1, 2] * 15)
    tree.extend(2, [1, 1, 2] * 10)
    assert tree.check_integrity() == ""
    tree.remove(1)
    assert tree.check_integrity() == ""
    tree.remove(0)
    assert tree.check_integrity() == ""


def test_memory_estimate_tracks_content():
    tree = SuffixTree(32)
    empty = tree.estimate_memory()
    tree.extend(0, list(range(1000)))
    grown = tree.estimate_memory()
    # At least one node and one stored token per position.
    assert grown > empty + 1000 * 4
    tree.remove(0)
    assert tree.estimate_memory() == empty


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="max_depth"):
        SuffixTree(0)
    tree = make_tree(4, [1, 2, 3])
    with pytest.raises(ValueError, match="max_spec_tokens"):
        tree.speculate([1, 2], -1)
    with pytest.raises(ValueError, match="unknown sequence"):
        tree.seq_len(7)
    assert tree.speculate([], 4).token_ids == []
