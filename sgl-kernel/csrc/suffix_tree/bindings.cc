// Python module arctic_sgl_kernel._suffix_tree: the suffix tree and its draft.
// Bad arguments raise ValueError (std::invalid_argument).

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "suffix_tree.h"

namespace py = pybind11;
using arctic_suffix::Draft;
using arctic_suffix::SuffixTree;

PYBIND11_MODULE(_suffix_tree, m) {
    m.doc() = "Suffix tree over token sequences for SuffixDecoding speculation.";

    py::class_<Draft>(m, "Draft",
                      "Draft tokens; parents[i] is the draft index of token i's parent "
                      "(-1: the context).")
        .def_readonly("token_ids", &Draft::token_ids)
        .def_readonly("parents", &Draft::parents)
        .def_readonly("probs", &Draft::probs)
        .def_readonly("score", &Draft::score)
        .def_readonly("match_len", &Draft::match_len)
        .def("__repr__", [](const Draft& d) {
            return "Draft(len=" + std::to_string(d.token_ids.size()) +
                   ", score=" + std::to_string(d.score) +
                   ", match_len=" + std::to_string(d.match_len) + ")";
        });

    py::class_<SuffixTree>(m, "SuffixTree",
                           "Suffixes (cut to max_depth tokens) of int32 token sequences "
                           "keyed by int32 ids.")
        .def(py::init<int32_t>(), py::arg("max_depth"))
        .def_property_readonly("max_depth", &SuffixTree::max_depth)
        .def("num_seqs", &SuffixTree::num_seqs)
        .def("has_seq", &SuffixTree::has_seq, py::arg("seq_id"))
        .def("seq_len", &SuffixTree::seq_len, py::arg("seq_id"))
        .def("num_nodes", &SuffixTree::num_nodes)
        .def("append", &SuffixTree::append, py::arg("seq_id"), py::arg("token"),
             "Append one token to a sequence (created if new). O(max_depth).")
        .def("extend", &SuffixTree::extend, py::arg("seq_id"), py::arg("tokens"),
             "Append tokens to a sequence (created if new).")
        .def("remove", &SuffixTree::remove, py::arg("seq_id"),
             "Remove a sequence and all its suffixes.")
        .def("speculate", &SuffixTree::speculate, py::arg("context"), py::arg("max_spec_tokens"),
             py::arg("max_spec_factor") = 1.0, py::arg("max_spec_offset") = 0.0,
             py::arg("min_token_prob") = 0.1, py::arg("use_tree_spec") = false,
             "Best draft continuing the context's last max_depth tokens.")
        .def("check_integrity", &SuffixTree::check_integrity,
             "Empty string if all invariants hold, else the first violation found.")
        .def("estimate_memory", &SuffixTree::estimate_memory, "Approximate bytes held.");

    // SuffixCache's hot path in one call: the context is converted once and
    // only the winning draft becomes Python objects.
    m.def(
        "speculate_best",
        [](const SuffixTree& request_tree, const SuffixTree* global_tree,
           const std::vector<int32_t>& context, int32_t max_spec_tokens, double max_spec_factor,
           double max_spec_offset, double min_token_prob, bool use_tree_spec) {
            Draft best = request_tree.speculate(context, max_spec_tokens, max_spec_factor,
                                                max_spec_offset, min_token_prob, use_tree_spec);
            if (global_tree != nullptr) {
                Draft other = global_tree->speculate(context, max_spec_tokens, max_spec_factor,
                                                     max_spec_offset, min_token_prob, use_tree_spec);
                if (other.score > best.score) best = std::move(other);
            }
            return py::make_tuple(best.token_ids, best.parents, best.probs, best.score,
                                  best.match_len);
        },
        py::arg("request_tree"), py::arg("global_tree").none(true), py::arg("context"),
        py::arg("max_spec_tokens"), py::arg("max_spec_factor"), py::arg("max_spec_offset"),
        py::arg("min_token_prob"), py::arg("use_tree_spec"),
        "The request tree's draft, or the global tree's (None: skipped) when it scores "
        "strictly higher, as (token_ids, parents, probs, score, match_len).");
}
