"""Settings: defaults, then ``forgepilot.toml``, then ``FORGEPILOT_*`` environment variables (highest).

The config file is ``$FORGEPILOT_CONFIG`` if set, else ``./forgepilot.toml`` if present. Nested settings use ``__``
in environment names: ``FORGEPILOT_LLAMA__N_CTX=8192``. The state dir (models, databases, caches) defaults to
``$XDG_DATA_HOME/forgepilot`` and is overridden with ``FORGEPILOT_STATE_DIR``, which is what tests do.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

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
    #: Several servers of this one model (vLLM / TGI / llama.cpp replicas): each request goes to the healthy one with
    #: the fewest requests in flight, and moves on when a server is gone.
    base_urls: list[str] = Field(default_factory=list)
    api_key_env: str | None = Field(default=None, description="Environment variable that holds the API key.")
    path: Path | None = Field(default=None, description="A GGUF file, for llamacpp models that are not embedded.")
    context_length: int | None = None


class LlamaSettings(BaseModel):
    model_config = {"extra": "forbid"}

    n_ctx: int = 4096
    #: Generation threads; None uses every CPU available to the process.
    n_threads: int | None = None
    n_batch: int = 512
    #: Earlier prompts' KV caches kept in RAM (MiB) beyond the live one: warmed files and the last editor requests
    #: (about 12 KiB a token for the embedded 0.5B model); 0 keeps only the live cache.
    prompt_cache_mib: int = Field(default=256, ge=0)
    #: Flash attention: faster prompts and generation on CPUs too (measured 1.1-1.2x on 2 cores).
    flash_attn: bool = True
    #: Prompt-lookup speculative decoding: tokens drafted from the prompt's own n-grams (0: off). Code often
    #: repeats what the prompt holds; llama-cpp-python then computes logits for every prompt token (slower prompts).
    prompt_lookup_tokens: int = Field(default=0, ge=0)


class HttpSettings(BaseModel):
    model_config = {"extra": "forbid"}

    timeout_s: float = 60.0
    connect_timeout_s: float = 5.0
    max_retries: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    #: A server's Retry-After longer than this is not waited for; the error is raised instead.
    max_retry_after_s: float = 30.0
    #: How often a model with several servers (``base_urls``) asks each one whether it is up.
    health_interval_s: float = Field(default=5.0, gt=0)


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


class ContextSettings(BaseModel):
    """What the context engine may put in front of the model, and how the token budget is split."""

    model_config = {"extra": "forbid"}

    #: Tokens for the whole prompt; None uses the model's context window minus the completion's max tokens.
    max_prompt_tokens: int | None = Field(default=1536, gt=0)
    #: Share of the budget for the text after the cursor (the rest goes to the prefix and snippets).
    suffix_share: float = Field(default=0.15, ge=0.0, le=0.9)
    #: Where the text after the cursor goes. ``suffix-first``: shown before the current file (as a file of the
    #: repository, or a comment snippet), the current file then continued left to right; typing only appends to such
    #: a prompt, so the model's cache keeps all of it (typing replay p50 0.42 s vs 1.38 s for ``fim``, 85 vs 62
    #: characters saved per 100 typed), and the instruct model uses repository context only in this layout
    #: (README, cross-file holes). ``fim``: the model family's fill-in-the-middle format, which puts that text after
    #: the prefix, so every keystroke evaluates it again. ``left-to-right``: not shown at all.
    layout: Literal["fim", "suffix-first", "left-to-right"] = "suffix-first"
    #: Lines after the cursor the prompt holds at most (None: as many as the share allows). Every keystroke
    #: evaluates the text after the cursor again: fewer lines, faster answers while typing.
    suffix_max_lines: int | None = Field(default=None, ge=1)
    #: Share of the budget the snippets (related, similar, retrieved) may take at most.
    snippet_share: float = Field(default=0.5, ge=0.0, le=0.9)
    #: What snippets are chosen for. ``file``: the document as a whole (the names it uses, its imports), so the
    #: context block stays the same wherever the cursor goes in the file and the model's cache keeps it.
    #: ``cursor``: the code around the cursor (chosen again at every new spot).
    snippet_scope: Literal["file", "cursor"] = "file"
    #: How snippets are shown to a model family with a repository-level format (Qwen2.5-Coder, StarCoder2):
    #: ``repo-level`` as other files of the repository before the current one (how such models were pretrained),
    #: ``comments`` as comment-prefixed snippets at the top of the current file (what every other family gets).
    snippet_format: Literal["repo-level", "comments"] = "repo-level"
    #: The prefix window starts on a multiple of this many lines (0: on any line), so prompts anywhere in a stretch
    #: of the file share their start (the model's cache reuses it): at most this many lines of prefix are given up.
    prefix_align_lines: int = Field(default=32, ge=0)
    similar: bool = True
    similar_window_lines: int = Field(default=60, gt=0)
    similar_max_files: int = Field(default=20, ge=0)
    similar_top: int = Field(default=4, ge=0)
    #: Windows less similar than this (Jaccard) are not worth their tokens.
    similar_min_score: float = Field(default=0.05, ge=0.0, le=1.0)
    related: bool = True
    related_max: int = Field(default=8, ge=0)
    #: A related definition's body is included when it has at most this many lines (else signature and doc).
    related_body_max_lines: int = Field(default=30, ge=0)
    #: Signatures of what the file imports from the repository (``context/reachable.py``): the API on offer where
    #: a line starts with a name defined elsewhere.
    imports: bool = True
    imports_max: int = Field(default=6, ge=0)
    retrieved: bool = True
    retrieved_top: int = Field(default=3, ge=0)
    #: Query embeddings cost ~10-20 ms on a CPU: completions retrieve lexically; ask-the-codebase uses vectors too.
    retrieved_vectors: bool = False


class AssistSettings(BaseModel):
    model_config = {"extra": "forbid"}

    #: Model per tier; None means ``default_model``. ``large``: explain/refactor/document/ask; ``fast``:
    #: completion/tests/review/commit; ``embed``: embeddings (``local:all-minilm-l6-v2`` is the embedded one).
    large: str | None = None
    fast: str | None = None
    embed: str = "local:all-minilm-l6-v2"
    cache_entries: int = Field(default=512, ge=0)
    inline_max_tokens: int = Field(default=48, gt=0)
    block_max_tokens: int = Field(default=256, gt=0)
    block_max_lines: int = Field(default=40, gt=0)
    chat_max_tokens: int = Field(default=768, gt=0)
    #: Seconds an editor's completion may generate after its first token (None: until max_tokens or a stop).
    completion_predict_s: float | None = Field(default=1.0, gt=0)
    #: An editor's request whose prompt would make the model evaluate more than this many new tokens (a spot its
    #: cache has not seen) is answered at once from an in-file prompt of this size, while the full prompt warms
    #: in the background for the next request there (None: always the full prompt). 128 new tokens are about 1.3 s
    #: on 2 cores; the typing replay's p95 fell from 2.17 s (256) to 1.13 s, 80 vs 85 characters saved per 100.
    cold_prompt_tokens: int | None = Field(default=128, ge=16)
    #: A file's prefix window is warmed into the model's cache at most once in this many seconds.
    warm_interval_s: float = Field(default=20.0, ge=0)
    #: A model whose backend is dead or slow hands its requests to its fallback: {"MODEL": "FALLBACK"}. The
    #: breaker opens after ``breaker_failures`` failed or slower-than-``breaker_slow_s`` calls in a row and tries
    #: the model again after ``breaker_open_s``.
    fallbacks: dict[str, str] = Field(default_factory=dict)
    breaker_failures: int = Field(default=3, ge=1)
    breaker_slow_s: float = Field(default=30.0, gt=0)
    breaker_open_s: float = Field(default=30.0, gt=0)


class GatewaySettings(BaseModel):
    model_config = {"extra": "forbid"}

    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    #: "auto": API keys required when bound beyond loopback; "on" / "off" force it.
    auth: Literal["auto", "on", "off"] = "auto"
    max_request_bytes: int = Field(default=4 << 20, gt=0)
    #: Requests per minute per API key (or per client address without auth); 0 disables the limit.
    rate_limit_per_minute: int = Field(default=600, ge=0)
    #: Seconds a client is told to wait (Retry-After) when the model backend is down.
    retry_after_s: int = Field(default=5, ge=1)
    #: Wall-clock seconds one request may hold (waiting for the model included); generation stops there.
    request_budget_s: float = Field(default=120.0, gt=0)
    #: With auth on, what answers without a key: "health" (full /healthz; without it only {"status": "ok"}),
    #: "metrics" (/metrics) and "docs" (/docs, /openapi.json). Closed by default.
    public: list[Literal["health", "metrics", "docs"]] = Field(default_factory=list)


class SandboxSettings(BaseModel):
    """``[sandbox]``: how untrusted code (evaluation samples, distilled solutions) may run."""

    model_config = {"extra": "forbid"}

    #: Where namespaces are not available, run programs under resource limits alone (no network cut, no sealed
    #: file system) instead of refusing; every run and report then says "limits-only".
    limits_only: bool = False


class DatasetSettings(BaseModel):
    """``[dataset]``: instance builders, quality gates (each threshold is applied), hygiene and splits."""

    model_config = {"extra": "forbid"}

    kinds: list[str] = Field(
        default_factory=lambda: ["inline", "in_block", "after_block", "tests", "code_to_doc", "doc_to_code", "commit"]
    )
    #: Most instances of one kind cut from one file (one large file must not dominate a set).
    per_file: int = Field(default=6, ge=1)
    inline_min_chars: int = Field(default=10, ge=1)
    block_min_lines: int = Field(default=2, ge=1)
    block_max_lines: int = Field(default=40, ge=1)
    doc_min_chars: int = Field(default=20, ge=1)
    commits: int = Field(default=500, ge=0)
    commit_max_diff_chars: int = Field(default=8000, gt=0)
    commit_min_message_chars: int = Field(default=12, ge=1)
    # -- gates
    max_file_bytes: int = Field(default=200_000, gt=0)
    max_instance_tokens: int = Field(default=2048, gt=0)
    max_complexity: int = Field(default=15, gt=0)
    max_function_lines: int = Field(default=80, gt=0)  # long method
    max_parameters: int = Field(default=6, ge=0)  # long parameter list
    max_nesting: int = Field(default=4, ge=0)  # deep nesting
    max_class_methods: int = Field(default=25, gt=0)  # god class
    max_class_lines: int = Field(default=600, gt=0)  # god class
    data_class_min_fields: int = Field(default=6, gt=0)  # data class: this many fields and only accessors
    # -- hygiene
    redact_secrets: bool = True
    dedup_threshold: float = Field(default=0.7, gt=0.0, le=1.0)
    dedup_permutations: int = Field(default=256, gt=0)
    dedup_shingle: int = Field(default=5, gt=0)
    decontaminate_humaneval: bool = True
    decontam_ngram: int = Field(default=10, gt=0)
    #: An instance is contaminated when this share of its target's n-grams occurs in an evaluation set.
    decontam_overlap: float = Field(default=0.3, gt=0.0, le=1.0)
    licence_allow: list[str] = Field(
        default_factory=lambda: [
            "MIT",
            "Apache-2.0",
            "BSD-2-Clause",
            "BSD-3-Clause",
            "ISC",
            "Unlicense",
            "PSF-2.0",
            "MPL-2.0",
            "0BSD",
            "none",
        ]
    )
    # -- splits
    split_by: Literal["repository", "file"] = "file"
    test_share: float = Field(default=0.1, ge=0.0, lt=1.0)
    valid_share: float = Field(default=0.05, ge=0.0, lt=1.0)
    seed: int = 0


class GuardSettings(BaseModel):
    """Guards at the model boundary (prompts in, answers out)."""

    model_config = {"extra": "forbid"}

    #: Mask secrets and personal data before a model sees them: always, only for remote models, or off (remote
    #: models are masked whatever this says).
    secrets: Literal["always", "remote", "off"] = "always"
    #: Replace instructions planted in code for AI assistants ("ignore previous instructions ...").
    instructions: bool = True
    #: Redact secrets in answers that the client never sent.
    redact_output: bool = True


class DeploySettings(BaseModel):
    """Deployments that serve: how often the registry is polled and the running rollout judged."""

    model_config = {"extra": "forbid"}

    #: Seconds between checks of the registry for a promoted champion or a rollout's new share.
    poll_s: float = Field(default=1.0, gt=0)
    #: Seconds between judgements of the running rollout by a serving gateway.
    tick_s: float = Field(default=5.0, gt=0)


class MonitorSettings(BaseModel):
    """Live monitoring: retention checks, the completion SLO behind degraded mode, and drift thresholds."""

    model_config = {"extra": "forbid"}

    #: The deployment the in-process LSP server records its completions under (a gateway records the alias that
    #: answered each one: champion or canary).
    deployment: str = "default"
    #: Seconds after an accept at which the LSP server checks the accepted text is still there (Copilot checks
    #: at 30 s, 2 min, 5 min and 10 min).
    retention_checkpoints_s: list[float] = Field(default_factory=lambda: [30.0, 120.0, 600.0])
    #: Share of the accepted text that must still match (fuzzy) for it to count as retained.
    retention_threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    #: Characters searched on each side of where the text was accepted (edits above move it down).
    retention_window_chars: int = Field(default=4000, gt=0)
    #: Completion SLO: this share of completions answer without error within ``slo_latency_s``.
    slo_latency_s: float = Field(default=8.0, gt=0)
    slo_target: float = Field(default=0.99, gt=0.0, lt=1.0)
    #: Burn-rate windows (seconds): degraded mode starts when both burn the error budget this fast.
    burn_long_s: float = Field(default=3600.0, gt=0)
    burn_short_s: float = Field(default=300.0, gt=0)
    degrade_burn: float = Field(default=14.4, gt=0)
    #: Degraded mode ends when the short window burns below this, after at least ``min_degraded_s``.
    recover_burn: float = Field(default=3.0, ge=0)
    min_degraded_s: float = Field(default=300.0, ge=0)
    #: Completions needed in the short window before its burn rate counts (one slow request is not an outage).
    min_requests: int = Field(default=20, ge=1)
    #: What degraded mode does: a smaller prompt, the fast tier (None: ``[assist] fast``), chat tasks paused.
    degraded_prompt_tokens: int = Field(default=512, gt=0)
    degraded_model: str | None = None
    pause_chat: bool = True
    #: Drift thresholds: population stability index (PSI) warn / alert, and the test's p-value for an alert.
    psi_warn: float = Field(default=0.1, gt=0)
    psi_alert: float = Field(default=0.25, gt=0)
    drift_p_value: float = Field(default=0.01, gt=0, lt=1)
    #: Fewest samples per window before a feature is judged (fewer: "too few").
    drift_min_samples: int = Field(default=30, ge=1)
    #: Event timestamps further than this from the server's clock are counted as skewed (the server's time is used).
    max_clock_skew_s: float = Field(default=300.0, gt=0)


class TrainSettings(BaseModel):
    """``forgepilot train``: fine-tuning defaults (seed 003's rules of thumb for small code models)."""

    model_config = {"extra": "forbid"}

    #: Torch threads on CPU; None uses every CPU available to the process.
    threads: int | None = None
    #: Below this many task samples ``--method auto`` trains a LoRA; above ``sft_above`` full SFT.
    lora_below: int = 1000
    sft_above: int = 10000
    lora_rank: int = Field(default=16, ge=1)
    lora_alpha: float = 32.0
    lora_dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    #: Modules LoRA adapts: every attention and MLP projection (llama.cpp applies adapters to these).
    lora_targets: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    lora_learning_rate: float = 2e-4
    sft_learning_rate: float = 2e-5
    epochs: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=4, ge=1)
    gradient_accumulation: int = Field(default=1, ge=1)
    #: Longer examples are left out (counted): cutting one would train on a prompt serving never sends.
    max_tokens: int = Field(default=2048, ge=16)
    warmup_ratio: float = Field(default=0.03, ge=0.0, lt=1.0)
    #: How the answer tokens' losses are averaged. ``token``: every answer token weighs the same, so a 200-token
    #: block answer outweighs a 12-token line 17 to 1 (block answers were ~90 % of the showcase's signal);
    #: ``example``: each example's mean, so each hole weighs the same, as each hole counts the same when judged.
    loss_average: Literal["token", "example"] = "token"
    #: Weight of the loss on the code in a completion prompt (prefix, suffix, context snippets: the repository's own
    #: text, never the format's markers) relative to the answer's. 0 trains on answers only; a weight also trains on
    #: the ~95 % of each example that is the repository's code, at ~1.1x the time of a step. At 0.1 the showcase's
    #: held-out gain fell (+12.7 % against +16.5 %, benchmarks/measured/train-plw-0.1.json), so 0 stays the default.
    #: Chat prompts are never trained on.
    prompt_loss_weight: float = Field(default=0.0, ge=0.0, le=1.0)
    save_steps: int = Field(default=50, ge=1)
    #: What a step computes in. ``auto``: bfloat16 on a GPU that has it, and on a CPU with native bfloat16
    #: instructions (AVX512-BF16 or AMX: ~2.3x faster than float32 on the 0.5B, weights kept in float32);
    #: float32 elsewhere.
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    seed: int = 0
    #: Runtime copies written after training (the first one is what ``llamacpp:NAME`` serves). Q8_0 first: the
    #: trained weights start from a dequantised Q4 base, and quantising them to Q4 again costs 100x or more the KL
    #: of Q8_0 (0.09 and 0.18 vs ~0.0009 nats per token in two showcase runs), enough to undo much of the gain.
    quants: list[str] = Field(default_factory=lambda: ["q8_0", "q4_k_m"])
    #: Largest mean KL divergence (nats per token) between the trained model and its float16 GGUF on fixed prompts.
    max_conversion_kl: float = Field(default=0.01, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FORGEPILOT_", env_nested_delimiter="__", extra="forbid")

    state_dir: Path = Field(default_factory=default_state_dir)
    #: ``postgresql://USER:PASSWORD@HOST:PORT/DB``: the stores (events, keys and limits, registry, evaluation runs,
    #: audit) live there, shared by several gateways and hosts; unset, each is a SQLite file in the state dir.
    database_url: str | None = Field(default=None, pattern=r"^postgres(ql)?://")
    default_model: str = DEFAULT_MODEL
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    llama: LlamaSettings = Field(default_factory=LlamaSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    prices: dict[str, PriceOverride] = Field(default_factory=dict)
    context: ContextSettings = Field(default_factory=ContextSettings)
    assist: AssistSettings = Field(default_factory=AssistSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    dataset: DatasetSettings = Field(default_factory=DatasetSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    guards: GuardSettings = Field(default_factory=GuardSettings)
    deploy: DeploySettings = Field(default_factory=DeploySettings)
    train: TrainSettings = Field(default_factory=TrainSettings)

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
