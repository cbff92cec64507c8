#!/usr/bin/env bash
# Install what is needed, then start the server (default: SmolLM2-135M-Instruct,
# on CPU when there is no GPU). Extra arguments go to the launcher.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec "$PY" -m sglang_arctic.launch_server "$@"
