"""The arctic feature matrix of the reliability suite.

Each entry is a server the abuse tests (test/reliability/test_abuse.py) and
the constrained-decoding kits (test/server/test_sglang_kits.py) run against:
the name of a session server fixture of test/conftest.py (shared with other
tests: no extra start) or a list of launcher flags (a server of its own).
A new server-side feature joins the matrix with one line here. Dynasor needs
no entry: it is switched on per request, and the abuse tests send it on
every server.
"""

from __future__ import annotations

FEATURES: dict[str, str | list[str]] = {
    "base": "arctic_server",
    # Every landed server-side feature at once (one start fewer than an entry
    # each): SuffixDecoding speculation and learned length scheduling.
    "suffix+ltr": "suffix_server",
}
