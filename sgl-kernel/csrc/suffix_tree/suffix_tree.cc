#include "suffix_tree.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <unordered_set>
#include <utility>

namespace arctic_suffix {

namespace {

// Above this many children a node keeps a token -> child hash index; below
// it, a scan of the (count-ordered) sibling list finds frequent tokens first.
constexpr int32_t kChildIndexThreshold = 8;

// Slack for m * factor + offset landing just under an integer (3 * 0.1 ...).
constexpr double kBudgetEpsilon = 1e-6;

void link_before(Node* anchor, Node* node) {
    node->prev_sibling = anchor->prev_sibling;
    node->next_sibling = anchor;
    if (anchor->prev_sibling != nullptr) {
        anchor->prev_sibling->next_sibling = node;
    } else {
        node->parent->first_child = node;
    }
    anchor->prev_sibling = node;
}

void link_after(Node* anchor, Node* node) {
    node->next_sibling = anchor->next_sibling;
    node->prev_sibling = anchor;
    if (anchor->next_sibling != nullptr) {
        anchor->next_sibling->prev_sibling = node;
    } else {
        node->parent->last_child = node;
    }
    anchor->next_sibling = node;
}

void unlink_siblings(Node* node) {
    if (node->prev_sibling != nullptr) {
        node->prev_sibling->next_sibling = node->next_sibling;
    } else {
        node->parent->first_child = node->next_sibling;
    }
    if (node->next_sibling != nullptr) {
        node->next_sibling->prev_sibling = node->prev_sibling;
    } else {
        node->parent->last_child = node->prev_sibling;
    }
    node->prev_sibling = nullptr;
    node->next_sibling = nullptr;
}

// The endpoint being moved is almost always the newest one at the node.
std::vector<Endpoint>::iterator find_endpoint(Node* node, const Sequence* seq, int32_t end) {
    for (auto it = node->endpoints.end(); it != node->endpoints.begin();) {
        --it;
        if (it->seq == seq && it->end == end) return it;
    }
    throw std::logic_error("suffix tree: missing endpoint");
}

void erase_endpoint(Node* node, const Sequence* seq, int32_t end) {
    auto it = find_endpoint(node, seq, end);
    *it = node->endpoints.back();
    node->endpoints.pop_back();
}

void move_endpoint(Node* node, const Sequence* seq, int32_t old_end, int32_t new_end) {
    find_endpoint(node, seq, old_end)->end = new_end;
}

}  // namespace

SuffixTree::SuffixTree(int32_t max_depth) : max_depth_(max_depth), root_(nullptr) {
    if (max_depth < 1) {
        throw std::invalid_argument("max_depth must be >= 1, got " + std::to_string(max_depth));
    }
    root_ = new Node();
}

SuffixTree::~SuffixTree() { delete_subtree(root_); }

size_t SuffixTree::seq_len(int32_t seq_id) const {
    auto it = seqs_.find(seq_id);
    if (it == seqs_.end()) {
        throw std::invalid_argument("unknown sequence " + std::to_string(seq_id));
    }
    return it->second->tokens.size();
}

size_t SuffixTree::num_nodes() const {
    size_t total = 0;
    std::vector<const Node*> stack{root_};
    while (!stack.empty()) {
        const Node* node = stack.back();
        stack.pop_back();
        ++total;
        for (const Node* c = node->first_child; c != nullptr; c = c->next_sibling) {
            stack.push_back(c);
        }
    }
    return total;
}

// ---------------------------------------------------------------- children

Node* SuffixTree::find_child(const Node* node, int32_t token) const {
    if (node->child_index) {
        auto it = node->child_index->find(token);
        return it == node->child_index->end() ? nullptr : it->second;
    }
    for (Node* c = node->first_child; c != nullptr; c = c->next_sibling) {
        if (c->token == token) return c;
    }
    return nullptr;
}

void SuffixTree::build_child_index(Node* node) {
    node->child_index = std::make_unique<std::unordered_map<int32_t, Node*>>();
    node->child_index->reserve(2 * static_cast<size_t>(node->num_children));
    for (Node* c = node->first_child; c != nullptr; c = c->next_sibling) {
        node->child_index->emplace(c->token, c);
    }
}

// `child` (count already set, unlinked) becomes the last sibling: its count
// is 1 in every caller, the lowest possible.
void SuffixTree::add_last_child(Node* parent, Node* child) {
    child->parent = parent;
    child->prev_sibling = parent->last_child;
    child->next_sibling = nullptr;
    if (parent->last_child != nullptr) {
        parent->last_child->next_sibling = child;
    } else {
        parent->first_child = child;
    }
    parent->last_child = child;
    parent->num_children += 1;
    join_adjacent_group(child);
    if (parent->child_index) {
        parent->child_index->emplace(child->token, child);
    } else if (parent->num_children > kChildIndexThreshold) {
        build_child_index(parent);
    }
}

void SuffixTree::unlink_child(Node* child) {
    Node* parent = child->parent;
    leave_group(child);
    unlink_siblings(child);
    parent->num_children -= 1;
    if (parent->child_index) {
        // Drop the index once the list is short again (half the threshold, so
        // a node hovering at the threshold does not rebuild it every step).
        if (parent->num_children <= kChildIndexThreshold / 2) {
            parent->child_index.reset();
        } else {
            parent->child_index->erase(child->token);
        }
    }
}

// `new_child` (same count and first token, not in any list) takes
// `old_child`'s place among its siblings, in its count group and in the index.
void SuffixTree::replace_child(Node* old_child, Node* new_child) {
    Node* parent = old_child->parent;
    new_child->parent = parent;
    new_child->prev_sibling = old_child->prev_sibling;
    new_child->next_sibling = old_child->next_sibling;
    if (old_child->prev_sibling != nullptr) {
        old_child->prev_sibling->next_sibling = new_child;
    } else {
        parent->first_child = new_child;
    }
    if (old_child->next_sibling != nullptr) {
        old_child->next_sibling->prev_sibling = new_child;
    } else {
        parent->last_child = new_child;
    }
    CountGroup* group = old_child->group;
    new_child->group = group;
    if (group->head == old_child) group->head = new_child;
    if (group->tail == old_child) group->tail = new_child;
    if (parent->child_index) (*parent->child_index)[new_child->token] = new_child;
    old_child->group = nullptr;
    old_child->prev_sibling = nullptr;
    old_child->next_sibling = nullptr;
}

void SuffixTree::rekey_child(Node* child, int32_t new_token) {
    Node* parent = child->parent;
    if (parent->child_index) {
        parent->child_index->erase(child->token);
        parent->child_index->emplace(new_token, child);
    }
    child->token = new_token;
}

void SuffixTree::delete_subtree(Node* node) {
    std::vector<Node*> stack{node};
    while (!stack.empty()) {
        Node* n = stack.back();
        stack.pop_back();
        for (Node* c = n->first_child; c != nullptr; c = c->next_sibling) {
            // A group is shared by a run of siblings, listed head to tail:
            // free it at the tail, after the last sibling that reads it.
            if (c->group != nullptr && c->group->tail == c) delete c->group;
            stack.push_back(c);
        }
        delete n;
    }
}

// ------------------------------------------------------------ count order

void SuffixTree::leave_group(Node* node) {
    CountGroup* group = node->group;
    if (group->head == node && group->tail == node) {
        delete group;
    } else if (group->head == node) {
        group->head = node->next_sibling;
    } else if (group->tail == node) {
        group->tail = node->prev_sibling;
    }
    node->group = nullptr;
}

// `node` sits at a run boundary with its final count: join the equal-count
// run just before or just after it, or start a run of its own.
void SuffixTree::join_adjacent_group(Node* node) {
    Node* prev = node->prev_sibling;
    Node* next = node->next_sibling;
    if (prev != nullptr && prev->count == node->count) {
        node->group = prev->group;
        node->group->tail = node;
    } else if (next != nullptr && next->count == node->count) {
        node->group = next->group;
        node->group->head = node;
    } else {
        node->group = new CountGroup{node, node};
    }
}

// count k -> k + 1: the node moves in front of its old run, i.e. to the end
// of the run of k + 1 (or starts it).
void SuffixTree::increment(Node* node) {
    Node* anchor = node->group->head;
    leave_group(node);
    node->count += 1;
    if (anchor != node) {
        unlink_siblings(node);
        link_before(anchor, node);
    }
    join_adjacent_group(node);
}

// count k -> k - 1 (k >= 2): the node moves behind its old run, i.e. to the
// front of the run of k - 1 (or starts it).
void SuffixTree::decrement(Node* node) {
    Node* anchor = node->group->tail;
    leave_group(node);
    node->count -= 1;
    if (anchor != node) {
        unlink_siblings(node);
        link_after(anchor, node);
    }
    join_adjacent_group(node);
}

// ------------------------------------------------------------------ append

void SuffixTree::append(int32_t seq_id, int32_t token) {
    std::unique_ptr<Sequence>& slot = seqs_[seq_id];
    if (!slot) {
        slot = std::make_unique<Sequence>();
        slot->id = seq_id;
    }
    Sequence* seq = slot.get();
    const int32_t pos = static_cast<int32_t>(seq->tokens.size());
    seq->tokens.push_back(token);

    // A new suffix starts at `pos`; the oldest one has reached max_depth and
    // stops growing.
    seq->active.push_back(root_);
    root_->count += 1;
    if (seq->active.size() > static_cast<size_t>(max_depth_)) seq->active.pop_front();
    for (Node*& end_node : seq->active) end_node = extend_suffix(seq, end_node, pos);
}

void SuffixTree::extend(int32_t seq_id, const std::vector<int32_t>& tokens) {
    for (int32_t token : tokens) append(seq_id, token);
}

// The suffix of `seq` ending at the end of `node` (depth < max_depth) grows
// by seq->tokens[pos]; returns the node it ends at afterwards.
Node* SuffixTree::extend_suffix(Sequence* seq, Node* node, int32_t pos) {
    const int32_t token = seq->tokens[pos];
    const bool at_root = node == root_;
    Node* child = find_child(node, token);

    if (child == nullptr) {
        if (!at_root && node->count == 1) {
            // A leaf that only this suffix reaches: lengthen its edge.
            node->ref_seq = seq;
            node->ref_idx = pos - node->length;
            node->length += 1;
            move_endpoint(node, seq, pos, pos + 1);
            return node;
        }
        Node* leaf = new Node();
        leaf->count = 1;
        leaf->token = token;
        leaf->length = 1;
        leaf->ref_seq = seq;
        leaf->ref_idx = pos;
        add_last_child(node, leaf);
        if (!at_root) erase_endpoint(node, seq, pos);
        leaf->endpoints.push_back({seq, pos + 1});
        return leaf;
    }

    if (!at_root && node->count == child->count + 1) {
        // Only this suffix ends at `node` and every other one goes on into
        // `child` (its only child). Once this suffix also goes on, `node` and
        // the first token of `child` have equal counts and belong to one edge.
        if (child->length == 1) {
            // `child` absorbs `node` and takes its place; `child`'s own
            // children stay where they are.
            leave_group(child);
            node->first_child = node->last_child = nullptr;
            node->num_children = 0;
            node->child_index.reset();
            child->count += 1;
            child->token = node->token;
            child->length = node->length + 1;
            child->ref_seq = seq;
            child->ref_idx = pos + 1 - child->length;
            replace_child(node, child);
            child->endpoints.push_back({seq, pos + 1});
            delete node;
            return child;
        }
        // `node`'s edge takes over the first token of `child`'s edge.
        node->ref_seq = seq;
        node->ref_idx = pos - node->length;
        node->length += 1;
        child->ref_idx += 1;
        child->length -= 1;
        rekey_child(child, child->token_at(0));
        move_endpoint(node, seq, pos, pos + 1);
        return node;
    }

    Node* end_node = child;
    if (child->length == 1) {
        increment(child);
    } else {
        // Split `child` after its first token, where this suffix will end.
        Node* head = new Node();
        head->count = child->count;
        head->token = token;
        head->length = 1;
        replace_child(child, head);
        child->ref_idx += 1;
        child->length -= 1;
        child->token = child->token_at(0);
        add_last_child(head, child);
        increment(head);
        end_node = head;
    }
    // Point the edge at the newest sequence: FIFO eviction removes old
    // sequences first, so fewer references need repointing on removal.
    end_node->ref_seq = seq;
    end_node->ref_idx = pos;
    if (!at_root) erase_endpoint(node, seq, pos);
    end_node->endpoints.push_back({seq, pos + 1});
    return end_node;
}

// ------------------------------------------------------------------ remove

void SuffixTree::remove(int32_t seq_id) {
    auto it = seqs_.find(seq_id);
    if (it == seqs_.end()) {
        throw std::invalid_argument("cannot remove unknown sequence " + std::to_string(seq_id));
    }
    Sequence* seq = it->second.get();
    const int32_t n = static_cast<int32_t>(seq->tokens.size());
    // First drop every suffix, then repoint the surviving edges that read
    // their tokens from `seq`: only then are no endpoints of `seq` left to
    // be mistaken for a witness.
    for (int32_t start = 0; start < n; ++start) remove_suffix_counts(seq, start);
    for (int32_t start = 0; start < n; ++start) repoint_refs(seq, start);
    seqs_.erase(it);
}

void SuffixTree::remove_suffix_counts(Sequence* seq, int32_t start) {
    const std::vector<int32_t>& tokens = seq->tokens;
    const int32_t end = std::min<int64_t>(static_cast<int64_t>(start) + max_depth_,
                                          static_cast<int64_t>(tokens.size()));
    root_->count -= 1;
    Node* node = root_;
    int32_t pos = start;
    while (pos < end) {
        Node* child = find_child(node, tokens[pos]);
        if (child->count == 1) {
            // Only this suffix reached `child`: its whole subtree goes,
            // the endpoint with it.
            unlink_child(child);
            delete_subtree(child);
            break;
        }
        decrement(child);
        pos += child->length;
        node = child;
    }
    if (node == root_) return;
    if (pos == end) erase_endpoint(node, seq, end);
    merge_into_only_child(node);
}

// A node left with one child of its own count spells one edge with it.
void SuffixTree::merge_into_only_child(Node* node) {
    if (node->num_children != 1 || node->first_child->count != node->count) return;
    Node* child = node->first_child;
    leave_group(child);
    node->first_child = node->last_child = nullptr;
    node->num_children = 0;
    node->child_index.reset();
    child->token = node->token;
    child->length += node->length;
    child->ref_idx -= node->length;
    replace_child(node, child);
    delete node;
}

// Edges along this suffix's path that still read from `seq` get their
// tokens from a surviving suffix below the path's deepest node instead.
void SuffixTree::repoint_refs(Sequence* seq, int32_t start) {
    const std::vector<int32_t>& tokens = seq->tokens;
    const int32_t end = std::min<int64_t>(static_cast<int64_t>(start) + max_depth_,
                                          static_cast<int64_t>(tokens.size()));
    // (node, depth of its first token) along the path; at most max_depth.
    std::vector<std::pair<Node*, int32_t>> stale;
    Node* node = root_;
    int32_t pos = start;
    while (pos < end) {
        Node* child = find_child(node, tokens[pos]);
        if (child == nullptr) break;
        if (child->ref_seq == seq) stale.emplace_back(child, pos - start);
        pos += child->length;
        node = child;
    }
    if (stale.empty()) return;
    Node* leaf = node;
    int64_t leaf_end_depth = pos - start;
    while (leaf->first_child != nullptr) {
        leaf = leaf->first_child;
        leaf_end_depth += leaf->length;
    }
    // A leaf has count > 0 and no children, so suffixes end there, and none
    // of them is `seq`'s any more.
    const Endpoint& witness = leaf->endpoints.front();
    const int64_t witness_start = witness.end - leaf_end_depth;
    for (auto& [stale_node, depth] : stale) {
        stale_node->ref_seq = witness.seq;
        stale_node->ref_idx = static_cast<int32_t>(witness_start + depth);
    }
}

// --------------------------------------------------------------- speculate

bool SuffixTree::match(const int32_t* pattern, int32_t len, const Node** out_node,
                       int32_t* out_offset) const {
    const Node* node = root_;
    int32_t offset = 0;
    for (int32_t i = 0; i < len; ++i) {
        if (offset == node->length) {
            node = find_child(node, pattern[i]);
            if (node == nullptr) return false;
            offset = 1;
        } else {
            if (node->token_at(offset) != pattern[i]) return false;
            ++offset;
        }
    }
    *out_node = node;
    *out_offset = offset;
    return true;
}

Draft SuffixTree::speculate(const std::vector<int32_t>& context, int32_t max_spec_tokens,
                            double max_spec_factor, double max_spec_offset,
                            double min_token_prob, bool use_tree_spec) const {
    if (max_spec_tokens < 0) {
        throw std::invalid_argument("max_spec_tokens must be >= 0, got " +
                                    std::to_string(max_spec_tokens));
    }
    const int32_t len = static_cast<int32_t>(
        std::min<size_t>(context.size(), static_cast<size_t>(max_depth_)));
    const int32_t* window = context.data() + (context.size() - len);
    // One scratch draft, swapped with the best when it wins: buffers are
    // reused across match lengths instead of allocated for each.
    Draft best;
    Draft draft;
    for (int32_t match_len = 1; match_len < len; ++match_len) {
        const Node* node = nullptr;
        int32_t offset = 0;
        // A longer pattern cannot occur if this one does not.
        if (!match(window + len - match_len, match_len, &node, &offset)) break;
        const double raw =
            std::floor(match_len * max_spec_factor + max_spec_offset + kBudgetEpsilon);
        const int32_t budget = raw <= 0.0 ? 0
                               : raw >= static_cast<double>(max_spec_tokens)
                                   ? max_spec_tokens
                                   : static_cast<int32_t>(raw);
        draft.token_ids.clear();
        draft.parents.clear();
        draft.probs.clear();
        draft.score = 0.0;
        if (budget > 0) {
            if (use_tree_spec) {
                speculate_tree(node, offset, budget, min_token_prob, &draft);
            } else {
                speculate_path(node, offset, budget, min_token_prob, &draft);
            }
        }
        if (draft.score >= best.score) {
            std::swap(best, draft);
            best.match_len = match_len;
        }
    }
    return best;
}

// Follow the most frequent continuation from `offset` tokens into `node`.
void SuffixTree::speculate_path(const Node* node, int32_t offset, int32_t budget,
                                double min_token_prob, Draft* draft) const {
    double prob = 1.0;
    while (static_cast<int32_t>(draft->token_ids.size()) < budget && prob >= min_token_prob) {
        if (offset < node->length) {
            draft->parents.push_back(static_cast<int32_t>(draft->token_ids.size()) - 1);
            draft->token_ids.push_back(node->token_at(offset));
            draft->probs.push_back(prob);
            draft->score += prob;
            ++offset;
            continue;
        }
        const Node* child = node->first_child;
        if (child == nullptr) break;
        prob *= static_cast<double>(child->count) / static_cast<double>(node->count);
        node = child;
        offset = 0;
    }
}

namespace {

// A token that may be drafted: the one at `offset` in `node`'s edge.
struct Candidate {
    double prob;
    uint64_t order;  // push order: among equal probabilities, first pushed first
    const Node* node;
    int32_t offset;
    int32_t parent;  // draft index of the preceding token, -1 for none
};

struct LowerPriority {
    bool operator()(const Candidate& a, const Candidate& b) const {
        if (a.prob != b.prob) return a.prob < b.prob;
        return a.order > b.order;
    }
};

}  // namespace

// Best-first expansion: always draft the most probable pending token.
void SuffixTree::speculate_tree(const Node* node, int32_t offset, int32_t budget,
                                double min_token_prob, Draft* draft) const {
    // A binary heap (most probable on top) in storage reused across calls.
    thread_local std::vector<Candidate> heap;
    heap.clear();
    const LowerPriority lower;
    uint64_t order = 0;
    auto push = [&](const Candidate& c) {
        heap.push_back(c);
        std::push_heap(heap.begin(), heap.end(), lower);
    };
    // Queue what can follow the token at `offset - 1` of `from`.
    auto push_next = [&](const Node* from, int32_t next_offset, double prob, int32_t parent) {
        if (next_offset < from->length) {
            if (prob >= min_token_prob) push({prob, order++, from, next_offset, parent});
            return;
        }
        for (const Node* c = from->first_child; c != nullptr; c = c->next_sibling) {
            const double p =
                prob * (static_cast<double>(c->count) / static_cast<double>(from->count));
            if (p < min_token_prob) break;  // siblings only get less likely
            push({p, order++, c, 0, parent});
        }
    };
    push_next(node, offset, 1.0, -1);
    while (static_cast<int32_t>(draft->token_ids.size()) < budget && !heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), lower);
        const Candidate top = heap.back();
        heap.pop_back();
        const int32_t index = static_cast<int32_t>(draft->token_ids.size());
        draft->token_ids.push_back(top.node->token_at(top.offset));
        draft->parents.push_back(top.parent);
        draft->probs.push_back(top.prob);
        draft->score += top.prob;
        push_next(top.node, top.offset + 1, top.prob, index);
    }
}

// --------------------------------------------------------------- integrity

#define ST_CHECK(cond, msg)         \
    do {                            \
        if (!(cond)) return (msg);  \
    } while (0)

std::string SuffixTree::check_integrity() const {
    ST_CHECK(root_->parent == nullptr && root_->length == 0 && root_->endpoints.empty(),
             "root has a parent, an edge or endpoints");
    std::string err = check_structure();
    if (!err.empty()) return err;
    return check_suffixes();
}

// Structure below the root, iteratively: links, order, groups, index,
// references, endpoints.
std::string SuffixTree::check_structure() const {
    struct Frame {
        const Node* node;
        std::vector<int32_t> path;  // tokens from the root to the node's end
    };
    std::unordered_set<const Sequence*> live;
    for (const auto& [id, seq] : seqs_) live.insert(seq.get());

    std::vector<Frame> stack;
    stack.push_back({root_, {}});
    while (!stack.empty()) {
        Frame frame = std::move(stack.back());
        stack.pop_back();
        const Node* node = frame.node;
        const int64_t depth = static_cast<int64_t>(frame.path.size());
        ST_CHECK(depth <= max_depth_, "node deeper than max_depth");

        int64_t child_sum = 0;
        int32_t seen = 0;
        const Node* prev = nullptr;
        for (const Node* c = node->first_child; c != nullptr; prev = c, c = c->next_sibling) {
            ++seen;
            ST_CHECK(seen <= node->num_children, "more children listed than num_children");
            ST_CHECK(c->parent == node, "child has a wrong parent pointer");
            ST_CHECK(c->prev_sibling == prev, "broken prev_sibling link");
            ST_CHECK(c->count >= 1, "child with count < 1");
            ST_CHECK(c->length >= 1, "child with an empty edge");
            ST_CHECK(c->group != nullptr, "child without a count group");
            if (prev == nullptr) {
                ST_CHECK(c->group->head == c, "first of a run is not its group head");
            } else {
                ST_CHECK(prev->count >= c->count, "siblings not in non-increasing count order");
                if (prev->count == c->count) {
                    ST_CHECK(prev->group == c->group, "equal-count neighbours in different groups");
                } else {
                    ST_CHECK(prev->group != c->group, "different counts share a group");
                    ST_CHECK(prev->group->tail == prev, "last of a run is not its group tail");
                    ST_CHECK(c->group->head == c, "first of a run is not its group head");
                }
            }
            if (c->next_sibling == nullptr) {
                ST_CHECK(node->last_child == c, "last_child is not the last sibling");
                ST_CHECK(c->group->tail == c, "last of a run is not its group tail");
            }
            if (node->child_index) {
                auto it = node->child_index->find(c->token);
                ST_CHECK(it != node->child_index->end() && it->second == c,
                         "child index misses a child");
            } else {
                for (const Node* o = node->first_child; o != c; o = o->next_sibling) {
                    ST_CHECK(o->token != c->token, "two children share a first token");
                }
            }
            child_sum += c->count;

            ST_CHECK(live.count(c->ref_seq) != 0, "edge references a removed sequence");
            const std::vector<int32_t>& ref = c->ref_seq->tokens;
            ST_CHECK(c->ref_idx >= depth &&
                         static_cast<size_t>(c->ref_idx) + c->length <= ref.size(),
                     "edge reference out of range");
            ST_CHECK(c->token == ref[c->ref_idx], "child key is not its edge's first token");
            for (int64_t i = 0; i < depth; ++i) {
                ST_CHECK(ref[c->ref_idx - depth + i] == frame.path[i],
                         "edge reference not preceded by the path from the root");
            }
            Frame next{c, frame.path};
            for (int32_t i = 0; i < c->length; ++i) next.path.push_back(ref[c->ref_idx + i]);
            stack.push_back(std::move(next));
        }
        ST_CHECK(seen == node->num_children, "num_children does not match the list");
        ST_CHECK(seen == 0 ? node->first_child == nullptr && node->last_child == nullptr : true,
                 "childless node with child pointers");
        if (node->child_index) {
            ST_CHECK(node->child_index->size() == static_cast<size_t>(seen),
                     "child index has stale entries");
        }

        if (node == root_) {
            ST_CHECK(child_sum == node->count, "root count is not the sum of its children");
            continue;
        }
        ST_CHECK(static_cast<int64_t>(node->endpoints.size()) == node->count - child_sum,
                 "endpoints do not account for count minus children's counts");
        ST_CHECK(!(node->num_children == 1 && child_sum == node->count),
                 "node with one equal-count child was not merged");
        for (const Endpoint& e : node->endpoints) {
            ST_CHECK(live.count(e.seq) != 0, "endpoint of a removed sequence");
            const int64_t start = static_cast<int64_t>(e.end) - depth;
            const int64_t seq_len = static_cast<int64_t>(e.seq->tokens.size());
            ST_CHECK(start >= 0 && e.end <= seq_len, "endpoint out of range");
            ST_CHECK(depth == std::min<int64_t>(max_depth_, seq_len - start),
                     "endpoint at the wrong depth for its suffix");
            for (int64_t i = 0; i < depth; ++i) {
                ST_CHECK(e.seq->tokens[start + i] == frame.path[i],
                         "endpoint tokens do not spell the path");
            }
        }
    }
    return "";
}

// Every stored suffix is in the tree, ends at a node end, and the counts are
// exactly the number of suffixes through each node; active ends are right.
std::string SuffixTree::check_suffixes() const {
    std::unordered_map<const Node*, int64_t> visits;
    int64_t total = 0;
    for (const auto& [id, seq_ptr] : seqs_) {
        const Sequence* seq = seq_ptr.get();
        const std::vector<int32_t>& tokens = seq->tokens;
        const int64_t n = static_cast<int64_t>(tokens.size());
        total += n;
        const int64_t num_active = std::min<int64_t>(n, max_depth_);
        ST_CHECK(static_cast<int64_t>(seq->active.size()) == num_active,
                 "wrong number of active suffixes");
        for (int64_t start = 0; start < n; ++start) {
            const int64_t end = std::min<int64_t>(start + max_depth_, n);
            const Node* node = root_;
            int64_t pos = start;
            while (pos < end) {
                node = find_child(node, tokens[pos]);
                ST_CHECK(node != nullptr, "suffix missing from the tree");
                ST_CHECK(pos + node->length <= end, "suffix ends inside an edge");
                for (int32_t i = 0; i < node->length; ++i) {
                    ST_CHECK(node->token_at(i) == tokens[pos + i],
                             "edge tokens differ from the suffix");
                }
                visits[node] += 1;
                pos += node->length;
            }
            bool has_endpoint = false;
            for (const Endpoint& e : node->endpoints) {
                has_endpoint |= e.seq == seq && e.end == end;
            }
            ST_CHECK(has_endpoint, "suffix end has no endpoint");
            const int64_t active_slot = start - (n - num_active);
            if (active_slot >= 0) {
                ST_CHECK(seq->active[active_slot] == node,
                         "active suffix points at the wrong node");
            }
        }
    }
    ST_CHECK(root_->count == total, "root count is not the number of suffixes");
    std::vector<const Node*> stack{root_};
    while (!stack.empty()) {
        const Node* node = stack.back();
        stack.pop_back();
        for (const Node* c = node->first_child; c != nullptr; c = c->next_sibling) {
            auto it = visits.find(c);
            ST_CHECK(it != visits.end() && it->second == c->count,
                     "node count differs from the suffixes through it");
            stack.push_back(c);
        }
    }
    return "";
}

#undef ST_CHECK

// ------------------------------------------------------------------ memory

size_t SuffixTree::estimate_memory() const {
    size_t total = sizeof(*this);
    std::vector<const Node*> stack{root_};
    while (!stack.empty()) {
        const Node* node = stack.back();
        stack.pop_back();
        total += sizeof(Node) + node->endpoints.capacity() * sizeof(Endpoint);
        if (node->group != nullptr && node->group->head == node) total += sizeof(CountGroup);
        if (node->child_index) {
            // Bucket array plus one heap node (key, value, next, cached hash) per entry.
            total += node->child_index->bucket_count() * sizeof(void*) +
                     node->child_index->size() * (sizeof(std::pair<const int32_t, Node*>) +
                                                  2 * sizeof(void*));
        }
        for (const Node* c = node->first_child; c != nullptr; c = c->next_sibling) {
            stack.push_back(c);
        }
    }
    for (const auto& [id, seq] : seqs_) {
        total += sizeof(Sequence) + seq->tokens.capacity() * sizeof(int32_t) +
                 seq->active.size() * sizeof(Node*) + 2 * sizeof(void*);
    }
    return total;
}

}  // namespace arctic_suffix
