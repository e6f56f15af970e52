from __future__ import annotations

from pathlib import Path

import pytest

from forgepilot.config import load_settings
from forgepilot.errors import (
    EXIT_CODES,
    BackendHTTPError,
    ConfigError,
    ForgePilotError,
    MissingExtra,
    ModelIntegrityError,
    ModelNotAvailable,
    UserError,
)


def test_env_wins_over_file_and_file_over_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "fp.toml"
    cfg.write_text('default_model = "fake:a"\n[llama]\nn_ctx = 1024\nn_batch = 64\n', encoding="utf-8")
    monkeypatch.setenv("FORGEPILOT_CONFIG", str(cfg))
    monkeypatch.setenv("FORGEPILOT_LLAMA__N_CTX", "2048")
    s = load_settings()
    assert s.default_model == "fake:a"
    assert s.llama.n_ctx == 2048  # env
    assert s.llama.n_batch == 64  # file
    assert s.http.max_retries == 3  # default


def test_local_forgepilot_toml_is_read(tmp_path: Path) -> None:
    (tmp_path / "forgepilot.toml").write_text(
        '[models."vllm:dsc"]\nfamily = "deepseek-coder"\nbase_url = "http://h:8000/v1"\n', encoding="utf-8"
    )
    s = load_settings()
    assert s.models["vllm:dsc"].family == "deepseek-coder"


def test_state_dir_from_env(isolated_state: Path) -> None:
    assert load_settings().state_dir == isolated_state
    assert load_settings().models_dir == isolated_state / "models"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[llama]\nn_ctx = 'big'\n", "llama.n_ctx"),
        ("unknown_key = 1\n", "unknown_key"),
        ("[models.x\n", "TOML"),
    ],
)
def test_bad_config_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, fragment: str
) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text, encoding="utf-8")
    monkeypatch.setenv("FORGEPILOT_CONFIG", str(cfg))
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert fragment in info.value.one_line()
    assert info.value.exit_code == 3


def test_missing_config_file_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORGEPILOT_CONFIG", "/nonexistent/fp.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings()


def test_one_line_joins_message_and_hint() -> None:
    err = ModelNotAvailable("model x is\nmissing parts", hint="pip install a==1")
    assert err.one_line() == "model x is missing parts (pip install a==1)"


def test_exit_codes_are_documented_and_distinct_per_branch() -> None:
    classes: list[type[ForgePilotError]] = [
        ForgePilotError,
        UserError,
        ConfigError,
        ModelNotAvailable,
        BackendHTTPError,
        ModelIntegrityError,
    ]
    codes = [c.exit_code for c in classes]
    assert len(set(codes)) == len(codes)
    assert all(code in EXIT_CODES for code in codes)


def test_missing_extra_names_the_extra() -> None:
    assert "pip install 'forgepilot[llama]'" in MissingExtra("llama_cpp", "llama").one_line()


def test_backend_error_carries_retryability_as_data() -> None:
    e = BackendHTTPError("x answered 503", backend="vllm:x", retryable=True, status=503)
    assert (e.retryable, e.status, e.backend) == (True, 503, "vllm:x")
