"""The typed config, its transport to children, the launcher's argv handling
and the version pin (no server needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sglang_arctic import compat, config, launch_server
from sglang_arctic.config import ArcticConfig, ArcticConfigError


def test_config_round_trips_through_json():
    original = ArcticConfig(cpu_kv_tokens=4096, reject_unknown_fields=False)
    assert ArcticConfig.from_json(original.to_json()) == original


@pytest.mark.parametrize(
    "text,words",
    [
        ("not json", "not valid JSON"),
        ("[1]", "JSON object"),
        ('{"cpu_kv_tokens": "8"}', "must be int"),
        ('{"cpu_kv_tokens": 8}', ">= 256"),
        ('{"no_such_option": 1}', "no_such_option"),
    ],
)
def test_bad_config_json_names_the_problem(text, words):
    with pytest.raises(ArcticConfigError, match=words):
        ArcticConfig.from_json(text)


def test_config_reaches_a_spawned_child(monkeypatch):
    monkeypatch.delenv(config.CONFIG_ENV, raising=False)
    config.export_config(ArcticConfig(cpu_kv_tokens=1234))
    try:
        out = subprocess.run(
            [sys.executable, "-c",
             "from sglang_arctic.config import load_config; print(load_config().cpu_kv_tokens)"],
            capture_output=True, text=True, check=True,
        )
    finally:
        monkeypatch.delenv(config.CONFIG_ENV, raising=False)
        config.load_config.cache_clear()
    assert out.stdout.strip() == "1234"


def test_without_launcher_config_the_plugin_is_passive(monkeypatch):
    monkeypatch.delenv(config.CONFIG_ENV, raising=False)
    config.load_config.cache_clear()
    assert config.load_config() == ArcticConfig.passive()
    assert config.load_config().reject_unknown_fields is False


def test_arctic_flags_are_split_from_sglang_flags():
    cfg, rest = launch_server.split_arctic_args(
        ["--port", "1", "--arctic-cpu-kv-tokens", "2048", "--no-arctic-reject-unknown-fields",
         "--dtype", "x"]
    )
    assert cfg == ArcticConfig(cpu_kv_tokens=2048, reject_unknown_fields=False)
    assert rest == ["--port", "1", "--dtype", "x"]


def test_unknown_arctic_flag_is_refused_before_sglang_loads(capsys):
    with pytest.raises(SystemExit) as exc:
        launch_server.split_arctic_args(["--port", "1", "--arctic-unknown=3"])
    assert exc.value.code != 0
    assert "--arctic-unknown" in capsys.readouterr().err


def test_missing_local_model_path_is_refused_at_once(tmp_path):
    with pytest.raises(SystemExit, match="no such file"):
        launch_server.check_local_model_path(["--model-path", str(tmp_path / "absent")])
    launch_server.check_local_model_path(["--model-path", str(tmp_path)])  # exists
    launch_server.check_local_model_path(["--model-path", "org/hub-model"])  # a hub id


def test_cpu_defaults_fill_only_what_the_user_did_not_set(monkeypatch):
    monkeypatch.delenv("SGLANG_USE_CPU_ENGINE", raising=False)
    monkeypatch.setattr(launch_server, "cpu_has_native_bf16", lambda: False)
    argv = launch_server.cpu_defaults(["--attention-backend=torch_native"], ArcticConfig())
    assert argv == ["--attention-backend=torch_native", "--device", "cpu",
                    "--max-total-tokens", "32768", "--dtype", "float32", "--sleep-on-idle"]
    monkeypatch.setattr(launch_server, "cpu_has_native_bf16", lambda: True)
    argv = launch_server.cpu_defaults(["--dtype", "bfloat16"], ArcticConfig())
    assert argv.count("--dtype") == 1 and "bfloat16" in argv
    assert "auto" in launch_server.cpu_defaults([], ArcticConfig())
    import os

    assert os.environ["SGLANG_USE_CPU_ENGINE"] == "1"


def test_native_bf16_is_read_from_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma\n")
    assert not launch_server.cpu_has_native_bf16(str(info))
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert launch_server.cpu_has_native_bf16(str(info))
    info.write_text("flags\t\t: fpu amx_bf16 amx_tile\n")
    assert launch_server.cpu_has_native_bf16(str(info))
    assert launch_server.cpu_has_native_bf16(str(tmp_path / "missing"))


def test_default_model_is_added_only_without_model_path(monkeypatch):
    monkeypatch.setattr(
        "sglang_arctic.models.default_model.materialize", lambda: "/cache/smol"
    )
    assert launch_server.default_model_args([]) == ["--model-path", "/cache/smol"]
    assert launch_server.default_model_args(["--model", "m"]) == ["--model", "m"]


def test_help_lists_arctic_and_sglang_flags_with_defaults():
    out = subprocess.run(
        [sys.executable, "-m", "sglang_arctic.launch_server", "--help"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--arctic-cpu-kv-tokens" in out.stdout and "(default: 32768)" in out.stdout
    assert "--speculative-algorithm" in out.stdout


def test_version_mismatch_stops_with_both_versions(monkeypatch):
    monkeypatch.setattr(compat, "installed_sglang_version", lambda: "0.5.99")
    with pytest.raises(SystemExit) as info:
        compat.check_sglang_version()
    assert "0.5.99" in str(info.value) and "0.5.23" in str(info.value)
    # SystemExit, so SGLang's `except Exception` in load_plugins cannot swallow it.
    assert not isinstance(info.value, Exception)


def test_installed_version_is_the_pinned_one():
    compat.check_sglang_version()


def test_every_arctic_flag_is_documented():
    import dataclasses
    from pathlib import Path

    doc = (Path(__file__).parents[3] / "docs" / "configuration.md").read_text()
    missing = [
        f.name for f in dataclasses.fields(ArcticConfig)
        if "--arctic-" + f.name.replace("_", "-") not in doc
    ]
    assert missing == []
