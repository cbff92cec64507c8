#!/usr/bin/env bash
# Issue 5, golden replay: our suffix tree against arctic-inference's on the same
# recorded output streams (see benchmark/golden_replay.py).
#
# 1. builds the peer, arctic-inference's SuffixDecodingCache, from its PyPI sdist
#    into benchmark/.peer/site (a benchmark-only install, never a dependency of
#    sglang_arctic; its build tools go to benchmark/.peer/tools);
# 2. records the streams from our server without speculation (resumes if
#    benchmark/results/golden/streams.jsonl is partly there);
# 3. replays them, path mode and tree mode, writing
#    benchmark/results/golden/replay_{path,tree}.{md,json}.
# Extra arguments go to both replays (e.g. --repeats 5).
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
peer="$PWD/benchmark/.peer"  # absolute: the build runs cmake from its own folder
version="${ARCTIC_INFERENCE_VERSION:-0.3.0}"
out=benchmark/results/golden
mkdir -p "$out"

if ! PYTHONPATH="$peer/site" "$py" -c "import arctic_inference.suffix_decoding" 2>/dev/null; then
  echo "[golden_replay] building arctic-inference $version (sdist) into $peer/site"
  "$py" -m pip install -q --target "$peer/tools" nanobind setuptools wheel grpcio-tools
  # --no-build-isolation: build with the tools above and the venv's torch
  # instead of downloading a second torch; --no-deps: the peer's runtime deps
  # (vLLM) are not needed to import its suffix cache.
  PYTHONPATH="$peer/tools" PATH="$peer/tools/bin:$PATH" \
    "$py" -m pip install -q --no-deps --no-build-isolation --no-binary arctic-inference \
    --target "$peer/site" "arctic-inference==$version"
  PYTHONPATH="$peer/site" "$py" -c "import arctic_inference.suffix_decoding"
fi

"$py" -m benchmark.golden_replay record
"$py" -m benchmark.golden_replay replay --output "$out/replay_path.md" "$@"
"$py" -m benchmark.golden_replay replay --tree --output "$out/replay_tree.md" "$@"
