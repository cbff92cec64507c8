"""Per-request Dynasor-CoT settings: the ``dynasor`` request object, its
presets, and the server defaults (``--arctic-dynasor-*``).

Shapes accepted in a request body (OpenAI ``extra_body`` or native
``/generate``), all keys optional::

    "dynasor": {"probe_interval": 32, "certainty_window": 3}   # Arctic Inference's shape
    "dynasor": {"saving_effort": "mid"}                         # the lab proxy's presets
    "dynasor": true | false | null                              # server defaults / off

A preset sets window and interval; explicit keys override it. Anything else
is a ``DynasorRequestError`` (answered 400).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from sglang_arctic.config import ArcticConfig

# The probe the paper and its code append to the partial reasoning: the model is
# nudged to state its current answer inside a box, which the probe then reads.
DEFAULT_PROBE_SUFFIX = (
    "... Oh, I suddenly got the answer to the whole problem, **Final Answer**\n\n\\[ \\boxed{"
)

# saving_effort -> (certainty_window, probe_interval), the lab proxy's table.
SAVING_EFFORT_PRESETS: dict[str, tuple[int, int]] = {
    "mild": (8, 64),
    "low": (5, 64),
    "mid": (3, 64),
    "high": (2, 64),
    "crazy": (2, 32),
}

MAX_PROBE_TOKENS = 512
MAX_SAMPLES = 64
REQUEST_FIELD = "dynasor"
CERTAINDEX_FIELD = "certaindex"


class DynasorRequestError(ValueError):
    """A malformed ``dynasor`` request object (HTTP 400)."""


@dataclass(frozen=True)
class DynasorSettings:
    probe_interval: int = 32
    certainty_window: int = 3
    probe_suffix: str = DEFAULT_PROBE_SUFFIX
    probe_max_tokens: int = 32
    probe_temperature: float = 0.6
    probe_top_p: float = 0.95

    def check(self, where: str) -> "DynasorSettings":
        """Range checks; ``where`` names the source in the message."""
        if self.probe_interval < 1:
            raise DynasorRequestError(f"{where}probe_interval must be >= 1, got {self.probe_interval}")
        if self.certainty_window < 1:
            raise DynasorRequestError(
                f"{where}certainty_window must be >= 1, got {self.certainty_window}")
        if not 1 <= self.probe_max_tokens <= MAX_PROBE_TOKENS:
            raise DynasorRequestError(
                f"{where}probe_max_tokens must be in [1, {MAX_PROBE_TOKENS}], got {self.probe_max_tokens}")
        if not (math.isfinite(self.probe_temperature) and 0.0 <= self.probe_temperature <= 2.0):
            raise DynasorRequestError(
                f"{where}probe_temperature must be in [0, 2], got {self.probe_temperature}")
        if not (math.isfinite(self.probe_top_p) and 0.0 < self.probe_top_p <= 1.0):
            raise DynasorRequestError(f"{where}probe_top_p must be in (0, 1], got {self.probe_top_p}")
        if not self.probe_suffix:
            raise DynasorRequestError(f"{where}probe_suffix must not be empty")
        return self


@dataclass(frozen=True)
class DynasorDefaults:
    """What the server applies: whether unmarked requests are probed, and with what."""

    enabled: bool
    settings: DynasorSettings

    @classmethod
    def from_config(cls, config: ArcticConfig) -> "DynasorDefaults":
        settings = DynasorSettings(
            probe_interval=config.dynasor_probe_interval,
            certainty_window=config.dynasor_certainty_window,
            probe_suffix=config.dynasor_probe_suffix or DEFAULT_PROBE_SUFFIX,
            probe_max_tokens=config.dynasor_probe_max_tokens,
            probe_temperature=config.dynasor_probe_temperature,
            probe_top_p=config.dynasor_probe_top_p,
        )
        return cls(enabled=config.dynasor, settings=settings)


# request key -> (settings field, accepted JSON types)
_INT = (int,)
_NUM = (int, float)
_KEYS: dict[str, tuple[str, tuple[type, ...]]] = {
    "probe_interval": ("probe_interval", _INT),
    "token_interval": ("probe_interval", _INT),  # the lab code's name
    "certainty_window": ("certainty_window", _INT),
    "probe_suffix": ("probe_suffix", (str,)),
    "probe_text": ("probe_suffix", (str,)),  # the lab code's name
    "probe_max_tokens": ("probe_max_tokens", _INT),
    "probe_temperature": ("probe_temperature", _NUM),
    "probe_top_p": ("probe_top_p", _NUM),
}


def parse_request_object(value: Any, defaults: DynasorDefaults) -> Optional[DynasorSettings]:
    """The settings for one request from its ``dynasor`` value; None: no probing.

    ``value`` is the JSON value of the field; absent fields are handled by the
    caller (``defaults.enabled`` decides).
    """
    where = f"'{REQUEST_FIELD}': "
    if value is None or value is False:
        return None
    if value is True:
        return defaults.settings
    if not isinstance(value, Mapping):
        raise DynasorRequestError(
            f"{where}expected an object, true, false or null, got {type(value).__name__}")
    unknown = sorted(k for k in value if k not in _KEYS and k not in ("saving_effort", "enabled"))
    if unknown:
        raise DynasorRequestError(
            f"{where}unknown key(s) {unknown}; known: {sorted([*_KEYS, 'saving_effort', 'enabled'])}")
    enabled = value.get("enabled", True)
    if not isinstance(enabled, bool):
        raise DynasorRequestError(f"{where}enabled must be a boolean, got {enabled!r}")
    if not enabled:
        return None
    changes: dict[str, Any] = {}
    effort = value.get("saving_effort")
    if effort is not None:
        if effort not in SAVING_EFFORT_PRESETS:
            raise DynasorRequestError(
                f"{where}saving_effort must be one of {sorted(SAVING_EFFORT_PRESETS)}, got {effort!r}")
        changes["certainty_window"], changes["probe_interval"] = SAVING_EFFORT_PRESETS[effort]
    for key, raw in value.items():
        if key not in _KEYS:
            continue
        name, types = _KEYS[key]
        # bool is an int in Python; JSON true is not a number here.
        if isinstance(raw, bool) or not isinstance(raw, types):
            raise DynasorRequestError(
                f"{where}{key} must be {' or '.join(t.__name__ for t in types)}, got {raw!r}")
        changes[name] = float(raw) if types is _NUM else raw
    return dataclasses.replace(defaults.settings, **changes).check(where)


@dataclass(frozen=True)
class CertaindexSettings:
    """Self-consistency with an adaptive sample count: samples come in waves
    of ``wave_size``; after each wave the answers' Certaindex decides."""

    max_samples: int = 8
    wave_size: int = 2
    threshold: float = 0.8


_CERTAINDEX_KEYS: dict[str, tuple[type, ...]] = {
    "max_samples": _INT, "wave_size": _INT, "threshold": _NUM,
}


def parse_certaindex_object(value: Any) -> CertaindexSettings:
    """The ``certaindex`` request object: ``{"max_samples", "wave_size", "threshold"}``."""
    where = f"'{CERTAINDEX_FIELD}': "
    if value is True:
        return CertaindexSettings()
    if not isinstance(value, Mapping):
        raise DynasorRequestError(f"{where}expected an object or true, got {type(value).__name__}")
    unknown = sorted(k for k in value if k not in _CERTAINDEX_KEYS)
    if unknown:
        raise DynasorRequestError(f"{where}unknown key(s) {unknown}; known: {sorted(_CERTAINDEX_KEYS)}")
    changes: dict[str, Any] = {}
    for key, raw in value.items():
        types = _CERTAINDEX_KEYS[key]
        if isinstance(raw, bool) or not isinstance(raw, types):
            raise DynasorRequestError(
                f"{where}{key} must be {' or '.join(t.__name__ for t in types)}, got {raw!r}")
        changes[key] = float(raw) if types is _NUM else raw
    settings = dataclasses.replace(CertaindexSettings(), **changes)
    if not 2 <= settings.max_samples <= MAX_SAMPLES:
        raise DynasorRequestError(f"{where}max_samples must be in [2, {MAX_SAMPLES}], got {settings.max_samples}")
    if not 1 <= settings.wave_size <= settings.max_samples:
        raise DynasorRequestError(
            f"{where}wave_size must be in [1, max_samples], got {settings.wave_size}")
    if not (math.isfinite(settings.threshold) and 0.0 <= settings.threshold <= 1.0):
        raise DynasorRequestError(f"{where}threshold must be in [0, 1], got {settings.threshold}")
    return settings
