#!/usr/bin/env bash
# Issue 5, end to end on CPU: SuffixDecoding vs vanilla SGLang (no speculation),
# sglang_arctic without speculation, and SGLang's NGRAM, on the three workloads
# (code editing, repeated template, chat), concurrency 1 and 8, generation
# stopping at the end of turn. One report per workload under
# benchmark/results/suffix_e2e/ (copy the tables into docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmark/results/suffix_e2e
mkdir -p "$out"
for workload in ${WORKLOADS:-code_edit template sharegpt}; do
  .venv/bin/python -m benchmark.side_by_side \
    --systems vanilla,arctic,ngram,suffix --dataset "$workload" \
    --concurrency 1,8 --max-tokens 256 --no-ignore-eos \
    --output "$out/$workload.md" --json "$out/$workload.json" "$@"
done
