"""HTTP-surface hardening that SGLang does not do itself.

Hook surface (all in the HTTP server process): one ASGI middleware added to
``sglang.srt.entrypoints.http_server.app`` by ``install()``.
"""

from sglang_arctic.api.strict_fields import install

__all__ = ["install"]
