"""The typed arctic configuration, and how it travels to SGLang's child processes.

SGLang's ``ServerArgs`` is a sealed struct and its children are started with
multiprocessing *spawn*, so arctic options cannot ride on ``ServerArgs`` and
cannot be set by monkeypatching the launcher. The launcher serializes one
``ArcticConfig`` to JSON in the ``SGLANG_ARCTIC_CONFIG`` environment variable;
every process (launcher, scheduler, detokenizer) parses it once with
``load_config()``. This is the only module that reads ``SGLANG_ARCTIC_*``
variables.

Adding an option: add a field with a default, a ``help`` in its metadata and
a check in ``validate``; the CLI flag ``--arctic-<field-with-dashes>`` is
generated from it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

CONFIG_ENV = "SGLANG_ARCTIC_CONFIG"
CACHE_DIR_ENV = "SGLANG_ARCTIC_CACHE_DIR"
SCHEDULES = ("off", "ltr", "oracle")


def default_cache_dir() -> Path:
    """User cache folder for artifacts we materialize (never inside the repo)."""
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "sglang_arctic"


class ArcticConfigError(ValueError):
    """A bad arctic option; the message names the option and the value."""


@dataclass(frozen=True)
class ArcticConfig:
    cpu_auto: bool = field(
        default=True,
        metadata={
            "help": "With no usable GPU, select SGLang's CPU engine and our CPU "
            "defaults (device cpu, arctic attention backend, a small KV budget) "
            "for every flag the user did not set."
        },
    )
    cpu_kv_tokens: int = field(
        default=32768,
        metadata={
            "help": "KV-cache size in tokens used on CPU when --max-total-tokens "
            "is not given (small, so start-up stays fast)."
        },
    )
    reject_unknown_fields: bool = field(
        default=True,
        metadata={
            "help": "Answer 400 to /generate, /v1/completions and /v1/chat/completions "
            "bodies with top-level fields the API does not define (SGLang ignores them)."
        },
    )

    # -- Safe serving defaults (api/limits.py, api/server_defaults.py) -----
    allow_public_bind: bool = field(
        default=False,
        metadata={
            "help": "Allow --host beyond loopback without --api-key (otherwise a startup "
            "error: anyone who can reach the port could use the server)."
        },
    )
    max_queued_requests: int = field(
        default=256,
        metadata={
            "help": "Waiting-queue bound passed to SGLang as --max-queued-requests when that "
            "is not given; a request beyond it gets 503 with Retry-After at once. 0: unbounded."
        },
    )
    queue_timeout: float = field(
        default=300.0,
        metadata={
            "help": "Seconds a request may wait in the queue before it gets 503 (SGLang's "
            "SGLANG_REQ_WAITING_TIMEOUT, unless that is set). 0: no limit."
        },
    )
    max_request_bytes: int = field(
        default=8 * 1024 * 1024,
        metadata={"help": "Largest POST body accepted; larger ones get 413 before parsing. 0: no limit."},
    )
    max_n: int = field(
        default=16,
        metadata={"help": "Largest `n` (and `best_of`) one request may ask for; above it, 400. 0: no limit."},
    )
    drain_timeout: float = field(
        default=30.0,
        metadata={
            "help": "On SIGTERM new requests get 503 at once and in-flight ones get this many "
            "seconds to finish before the server exits anyway. 0: wait for them forever."
        },
    )
    retry_after: int = field(
        default=2,
        metadata={"help": "Seconds advertised in the Retry-After header of every 503."},
    )

    local_process_group: bool = field(
        default=True,
        metadata={
            "help": "With one model process (tp = pp = 1), initialize torch.distributed from a "
            "private file store instead of SGLang's TCP store, which listens on every interface."
        },
    )

    # -- SuffixDecoding (spec/suffix_algorithm.py) -------------------------
    suffix_decoding: bool = field(
        default=False,
        metadata={
            "help": "Speculate with SuffixDecoding: shorthand for "
            "--speculative-algorithm ARCTIC_SUFFIX."
        },
    )
    suffix_max_depth: int = field(
        default=64,
        metadata={"help": "SuffixDecoding: longest suffix (tokens) stored in a tree."},
    )
    suffix_max_cached_requests: int = field(
        default=10000,
        metadata={
            "help": "SuffixDecoding: responses of past requests kept in the global "
            "tree (FIFO eviction; 0 disables the global tree; < 0 unbounded)."
        },
    )
    suffix_max_spec_tokens: int = field(
        default=16,
        metadata={
            "help": "SuffixDecoding: most draft tokens per request and step; the "
            "verify width is this + 1 unless --speculative-num-draft-tokens is given."
        },
    )
    suffix_max_spec_tokens_cpu: int = field(
        default=16,
        metadata={
            "help": "SuffixDecoding on CPU: the same. A CPU pays for every verified "
            "position at every step; the adaptive width narrows steps that do not pay, so "
            "the cap only bounds the widest step (set it lower when adaptive width is off)."
        },
    )
    suffix_adaptive_width: bool = field(
        default=True,
        metadata={
            "help": "SuffixDecoding: choose each step's verify width (1 .. the maximum) "
            "from the drafts' estimated acceptance and the measured cost per verified "
            "token; off: always verify the maximum width."
        },
    )
    # Factor and min token prob are looser than the reference's (1.0, 0.1): the
    # adaptive verify width already drops draft positions that do not pay, so a
    # larger budget only gives it more to choose from (docs/benchmarks.md, run E).
    suffix_max_spec_factor: float = field(
        default=2.0,
        metadata={"help": "SuffixDecoding: draft budget per matched token (budget = "
                  "floor(match_len * factor + offset); the reference uses 1.0)."},
    )
    # Offset 4 and tree drafts (the reference: 0 and a path): a short match still
    # drafts a few branches, which is where chat's acceptance comes from; a
    # verified position costs ~1% of a CPU step (docs/benchmarks.md, run G).
    suffix_max_spec_offset: float = field(
        default=4.0,
        metadata={"help": "SuffixDecoding: draft budget offset (see factor; the reference "
                  "uses 0)."},
    )
    suffix_min_token_prob: float = field(
        default=0.05,
        metadata={"help": "SuffixDecoding: stop a draft path at a token whose estimated "
                  "probability is below this (the reference uses 0.1)."},
    )
    suffix_tree_spec: bool = field(
        default=True,
        metadata={"help": "SuffixDecoding: draft a tree (the most probable continuations, "
                  "best first) instead of one path (the reference's default)."},
    )
    suffix_max_batch_size: int = field(
        default=64,
        metadata={"help": "SuffixDecoding: in larger decode batches only the first this "
                  "many requests draft (speculation pays least when the batch is large)."},
    )

    # -- Length scheduling (scheduling/) -------------------------------------
    schedule: str = field(
        default="off",
        metadata={
            "help": "Waiting-queue order. off: SGLang's --schedule-policy. ltr: by the "
            "learned length ranker (shortest predicted output first, with starvation "
            "promotion). oracle (benchmarks only): by the true output lengths read from "
            "--arctic-schedule-oracle-trace."
        },
    )
    schedule_ranker: str = field(
        default="",
        metadata={"help": "LightGBM ranker file for --arctic-schedule ltr; empty: the "
                  "ranker shipped for the default model."},
    )
    schedule_oracle_trace: str = field(
        default="",
        metadata={"help": "Trace JSONL (from --arctic-schedule-trace) whose output lengths "
                  "the oracle order uses."},
    )
    schedule_starvation_steps: int = field(
        default=200,
        metadata={"help": "A request passed over by this many scheduling rounds is promoted "
                  "to the front (ltr/oracle)."},
    )
    schedule_promotion_steps: int = field(
        default=10,
        metadata={"help": "How many scheduling rounds a starvation promotion lasts."},
    )
    schedule_max_wait: float = field(
        default=240.0,
        metadata={"help": "Seconds of waiting after which a request stays at the front "
                  "until admitted, whatever its rank (ltr/oracle). 0: no age bound."},
    )
    schedule_trace: str = field(
        default="",
        metadata={"help": "Append one JSON line per finished request (ranker features, "
                  "output length, timing) to this file, to train a ranker on your own "
                  "traffic (works with every --arctic-schedule)."},
    )

    # -- Dynasor reasoning termination (reasoning/) -----------------------------
    dynasor_requests: bool = field(
        default=True,
        metadata={"help": "Accept the per-request 'dynasor' object (OpenAI extra_body, "
                  "native /generate) that switches probe-in-the-middle early exit on."},
    )
    dynasor: bool = field(
        default=False,
        metadata={"help": "Probe every single-completion request by default (a request "
                  "opts out with \"dynasor\": false)."},
    )
    dynasor_probe_interval: int = field(
        default=32, metadata={"help": "Dynasor: probe every this many generated tokens."})
    dynasor_certainty_window: int = field(
        default=3,
        metadata={"help": "Dynasor: stop once this many consecutive probe answers agree."},
    )
    dynasor_probe_max_tokens: int = field(
        default=32, metadata={"help": "Dynasor: tokens a probe may generate."})
    dynasor_probe_temperature: float = field(
        default=0.6, metadata={"help": "Dynasor: probe sampling temperature."})
    dynasor_probe_top_p: float = field(
        default=0.95, metadata={"help": "Dynasor: probe top-p."})
    dynasor_probe_suffix: str = field(
        default="",
        metadata={"help": "Dynasor: text appended to the output so far to ask for the "
                  "current answer; must end inside an open \\boxed{. Empty: the paper's."},
    )

    @classmethod
    def passive(cls) -> "ArcticConfig":
        """The config of a process not started by our launcher (plain `sglang serve`):
        every behaviour-changing feature off, so SGLang behaves exactly as vanilla."""
        return cls(reject_unknown_fields=False, allow_public_bind=True, max_queued_requests=0,
                   queue_timeout=0.0, max_request_bytes=0, max_n=0, drain_timeout=0.0,
                   local_process_group=False, dynasor_requests=False)

    def validate(self) -> "ArcticConfig":
        if self.cpu_kv_tokens < 256:
            raise ArcticConfigError(
                f"--arctic-cpu-kv-tokens must be >= 256, got {self.cpu_kv_tokens}"
            )
        non_negative = {
            "max_queued_requests": self.max_queued_requests,
            "queue_timeout": self.queue_timeout,
            "max_request_bytes": self.max_request_bytes,
            "max_n": self.max_n,
            "drain_timeout": self.drain_timeout,
            "retry_after": self.retry_after,
        }
        for name, value in non_negative.items():
            if value < 0:
                raise ArcticConfigError(f"--arctic-{name.replace('_', '-')} must be >= 0, got {value}")
        positive = {
            "suffix_max_depth": self.suffix_max_depth,
            "suffix_max_spec_tokens": self.suffix_max_spec_tokens,
            "suffix_max_spec_tokens_cpu": self.suffix_max_spec_tokens_cpu,
        }
        for name, value in positive.items():
            if value < 1:
                raise ArcticConfigError(f"--arctic-{name.replace('_', '-')} must be >= 1, got {value}")
        if self.suffix_max_spec_factor < 0:
            raise ArcticConfigError(
                f"--arctic-suffix-max-spec-factor must be >= 0, got {self.suffix_max_spec_factor}"
            )
        if not 0.0 <= self.suffix_min_token_prob <= 1.0:
            raise ArcticConfigError(
                f"--arctic-suffix-min-token-prob must be in [0, 1], got {self.suffix_min_token_prob}"
            )
        if self.suffix_max_batch_size < 0:
            raise ArcticConfigError(
                f"--arctic-suffix-max-batch-size must be >= 0, got {self.suffix_max_batch_size}"
            )
        if self.schedule not in SCHEDULES:
            raise ArcticConfigError(
                f"--arctic-schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"
            )
        if self.schedule == "oracle" and not self.schedule_oracle_trace:
            raise ArcticConfigError(
                "--arctic-schedule oracle needs --arctic-schedule-oracle-trace (a trace JSONL)"
            )
        for name in ("schedule_starvation_steps", "schedule_promotion_steps"):
            if getattr(self, name) < 1:
                raise ArcticConfigError(
                    f"--arctic-{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )
        if self.schedule_max_wait < 0:
            raise ArcticConfigError(
                f"--arctic-schedule-max-wait must be >= 0, got {self.schedule_max_wait}"
            )
        from sglang_arctic.reasoning.settings import DynasorDefaults, DynasorRequestError

        try:
            DynasorDefaults.from_config(self).settings.check("--arctic-dynasor-")
        except DynasorRequestError as exc:
            raise ArcticConfigError(str(exc).replace("_", "-")) from None
        return self

    # -- transport -------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ArcticConfig":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArcticConfigError(f"{CONFIG_ENV} is not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ArcticConfigError(f"{CONFIG_ENV} must hold a JSON object")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ArcticConfigError(f"unknown arctic option(s) in {CONFIG_ENV}: {unknown}")
        for name, value in raw.items():
            expected = type(known[name].default)
            if expected is float and type(value) is int:
                raw[name] = value = float(value)  # JSON writes 1.0 as 1 in some tools
            if type(value) is not expected:
                raise ArcticConfigError(
                    f"arctic option {name!r} must be {expected.__name__}, got {value!r}"
                )
        return cls(**raw).validate()


@lru_cache(maxsize=1)
def load_config() -> ArcticConfig:
    """The config of this process: from the environment (set by our launcher),
    else the passive config."""
    text = os.environ.get(CONFIG_ENV)
    return ArcticConfig.from_json(text) if text else ArcticConfig.passive()


def export_config(config: ArcticConfig) -> None:
    """Publish ``config`` to this process and every child it spawns."""
    os.environ[CONFIG_ENV] = config.to_json()
    load_config.cache_clear()
