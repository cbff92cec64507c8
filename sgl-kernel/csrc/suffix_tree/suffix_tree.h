// Suffix tree over token sequences for SuffixDecoding (arXiv 2411.04975).
//
// The tree holds every suffix of every stored sequence, each cut to at most
// `max_depth` tokens. A node is a path-compressed edge: `length` tokens read
// from a stored sequence at `ref_idx`, and `count` = the number of stored
// suffixes that pass through or end at it. Every suffix ends exactly at the
// end of a node (a node is split where a suffix stops inside it), so counts
// are uniform along an edge and the suffixes ending at a node number
// `count - sum(children counts)`; they are listed in `endpoints`.
//
// Siblings form a list in non-increasing count order, so the most frequent
// child is the list head. Siblings with equal counts share a `CountGroup`
// that knows the run's first and last node; a count change by one moves a
// node to the edge of its run, so reordering is O(1). Order among equal
// counts: a node whose count went up goes last in its new run, a node whose
// count went down goes first in its new run, a new child goes last.
//
// Complexities: append O(max_depth) (one step per active suffix), remove
// O(len * max_depth), speculate O(max_depth^2 + max_depth * budget).

#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace arctic_suffix {

struct Node;

// A stored sequence. Nodes point at it for their tokens, so it must not move:
// the tree owns each one through a unique_ptr.
struct Sequence {
    int32_t id = 0;
    std::vector<int32_t> tokens;
    // Nodes where the still-growing suffixes end, oldest start first. The
    // newest entry is the root (the empty suffix that the next token starts).
    std::deque<Node*> active;
};

// Siblings that share one count: first and last node of the run.
struct CountGroup {
    Node* head = nullptr;
    Node* tail = nullptr;
};

// Where a stored suffix ends: `end` is the exclusive end index in `seq`.
struct Endpoint {
    Sequence* seq;
    int32_t end;
};

struct Node {
    int64_t count = 0;
    int32_t token = 0;     // first token of the edge (the key in the parent)
    int32_t length = 0;    // tokens on the edge; 0 only for the root
    Sequence* ref_seq = nullptr;  // edge tokens = ref_seq->tokens[ref_idx, ref_idx + length)
    int32_t ref_idx = 0;
    int32_t num_children = 0;
    Node* parent = nullptr;
    Node* first_child = nullptr;  // highest count
    Node* last_child = nullptr;   // lowest count
    Node* prev_sibling = nullptr;
    Node* next_sibling = nullptr;
    CountGroup* group = nullptr;  // run of equal-count siblings this node is in
    // token -> child, built only once a node has many children (scanning a
    // short list is faster than hashing and costs no memory).
    std::unique_ptr<std::unordered_map<int32_t, Node*>> child_index;
    std::vector<Endpoint> endpoints;

    int32_t token_at(int32_t offset) const { return ref_seq->tokens[ref_idx + offset]; }
};

// One speculation. `parents[i]` is the index in `token_ids` of token i's
// parent, -1 for a token that follows the context directly; in path mode it
// is always i - 1. `probs[i]` is the product of child.count / node.count
// along the way from the match point.
struct Draft {
    std::vector<int32_t> token_ids;
    std::vector<int32_t> parents;
    std::vector<double> probs;
    double score = 0.0;  // sum of probs
    int32_t match_len = 0;
};

class SuffixTree {
public:
    explicit SuffixTree(int32_t max_depth);
    ~SuffixTree();
    SuffixTree(const SuffixTree&) = delete;
    SuffixTree& operator=(const SuffixTree&) = delete;

    int32_t max_depth() const { return max_depth_; }
    size_t num_seqs() const { return seqs_.size(); }
    bool has_seq(int32_t seq_id) const { return seqs_.count(seq_id) != 0; }
    size_t seq_len(int32_t seq_id) const;
    size_t num_nodes() const;

    // Append tokens to sequence `seq_id`, creating it if new.
    void append(int32_t seq_id, int32_t token);
    void extend(int32_t seq_id, const std::vector<int32_t>& tokens);

    // Remove sequence `seq_id` and every suffix of it.
    void remove(int32_t seq_id);

    // Best draft continuing `context` (only its last max_depth tokens count).
    // For each match length m = 1 .. len(context) - 1 whose last-m-token
    // pattern occurs in the tree, a draft of at most
    // min(max_spec_tokens, floor(m * max_spec_factor + max_spec_offset))
    // tokens is built; the highest score wins, ties to the longer match.
    Draft speculate(const std::vector<int32_t>& context, int32_t max_spec_tokens,
                    double max_spec_factor, double max_spec_offset, double min_token_prob,
                    bool use_tree_spec) const;

    // Empty if every structural invariant holds, else what is broken.
    std::string check_integrity() const;

    // Bytes held by nodes, groups, indexes, endpoints and stored sequences.
    size_t estimate_memory() const;

private:
    int32_t max_depth_;
    Node* root_;
    std::unordered_map<int32_t, std::unique_ptr<Sequence>> seqs_;

    // Children.
    Node* find_child(const Node* node, int32_t token) const;
    void add_last_child(Node* parent, Node* child);
    void unlink_child(Node* child);
    void replace_child(Node* old_child, Node* new_child);
    void rekey_child(Node* child, int32_t new_token);
    void build_child_index(Node* node);
    void delete_subtree(Node* node);

    // Sibling order under count changes by one.
    void leave_group(Node* node);
    void join_adjacent_group(Node* node);
    void increment(Node* node);
    void decrement(Node* node);

    // One suffix of `seq`, currently ending at `node`, grows by the token at `pos`.
    Node* extend_suffix(Sequence* seq, Node* node, int32_t pos);
    // Removal steps.
    void remove_suffix_counts(Sequence* seq, int32_t start);
    void merge_into_only_child(Node* node);
    void repoint_refs(Sequence* seq, int32_t start);

    // Speculation steps.
    bool match(const int32_t* pattern, int32_t len, const Node** node, int32_t* offset) const;
    void speculate_path(const Node* node, int32_t offset, int32_t budget, double min_token_prob,
                        Draft* draft) const;
    void speculate_tree(const Node* node, int32_t offset, int32_t budget, double min_token_prob,
                        Draft* draft) const;

    std::string check_structure() const;
    std::string check_suffixes() const;
};

}  // namespace arctic_suffix
