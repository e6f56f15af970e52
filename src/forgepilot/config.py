"""Settings: defaults, then ``forgepilot.toml``, then ``FORGEPILOT_*`` environment variables (highest).

The config file is ``$FORGEPILOT_CONFIG`` if set, else ``./forgepilot.toml`` if present. Nested settings use ``__``
in environment names: ``FORGEPILOT_LLAMA__N_CTX=8192``. The state dir (models, databases, caches) defaults to
``$XDG_DATA_HOME/forgepilot`` and is overridden with ``FORGEPILOT_STATE_DIR``, which is what tests do.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from forgepilot.errors import ConfigError

DEFAULT_MODEL = "llamacpp:qwen2.5-coder-0.5b"


def default_state_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "forgepilot"


class ModelConfig(BaseModel):
    """A model the user declares in ``[models."provider:name"]``; built-in embedded models need no entry."""

    model_config = {"extra": "forbid"}

    family: str = Field(description="Declared model family; selects the FIM and prompt format (never guessed).")
    provider: str | None = Field(
        default=None,
        description="llamacpp, an HTTP provider (openai, vllm, tgi, ollama, ...) or fake; default: the name's prefix.",
    )
    model: str | None = Field(default=None, description="The id the server knows the model by.")
    base_url: str | None = None
    api_key_env: str | None = Field(default=None, description="Environment variable that holds the API key.")
    path: Path | None = Field(default=None, description="A GGUF file, for llamacpp models that are not embedded.")
    context_length: int | None = None


class LlamaSettings(BaseModel):
    model_config = {"extra": "forbid"}

    n_ctx: int = 4096
    #: Generation threads; None uses every CPU available to the process.
    n_threads: int | None = None
    n_batch: int = 512
    #: Extra prompt-prefix states kept in RAM (MiB) beyond the live KV cache; 0 keeps only the live one.
    prompt_cache_mib: int = 0


class HttpSettings(BaseModel):
    model_config = {"extra": "forbid"}

    timeout_s: float = 60.0
    connect_timeout_s: float = 5.0
    max_retries: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    #: A server's Retry-After longer than this is not waited for; the error is raised instead.
    max_retry_after_s: float = 30.0


class IndexSettings(BaseModel):
    model_config = {"extra": "forbid"}

    #: Files larger than this are skipped (recorded as too_large).
    max_file_bytes: int = Field(default=1 << 20, gt=0)
    #: A line longer than this marks a file as minified (skipped).
    max_line_chars: int = Field(default=1000, gt=0)
    chunk_target: int = Field(default=1500, gt=0)
    chunk_hard_max: int = Field(default=3000, gt=0)


class PriceOverride(BaseModel):
    model_config = {"extra": "forbid"}

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FORGEPILOT_", env_nested_delimiter="__", extra="forbid")

    state_dir: Path = Field(default_factory=default_state_dir)
    default_model: str = DEFAULT_MODEL
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    llama: LlamaSettings = Field(default_factory=LlamaSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    prices: dict[str, PriceOverride] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init kwargs; the environment must win over them.
        return env_settings, init_settings

    @property
    def models_dir(self) -> Path:
        return self.state_dir / "models"


def config_path() -> Path | None:
    explicit = os.environ.get("FORGEPILOT_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist", hint="fix or unset FORGEPILOT_CONFIG")
        return path
    local = Path("forgepilot.toml")
    return local if local.is_file() else None


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read settings; ``overrides`` (e.g. from CLI flags) win over the file but not over the environment."""
    path = path or config_path()
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}", hint="fix the TOML syntax") from exc
    data.update(overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"invalid setting {where}: {first['msg']}", hint=f"check {path or 'the FORGEPILOT_* environment'}"
        ) from exc
