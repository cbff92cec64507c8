#!/usr/bin/env bash
# Install what is needed, then run the whole test suite. Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ARCTIC_ROOT"
# Materialize the default model once up front, so its progress shows here
# rather than inside the first server test's start-up timeout.
"$PY" -m sglang_arctic.models.default_model >/dev/null
exec "$PY" -m pytest test "$@"
