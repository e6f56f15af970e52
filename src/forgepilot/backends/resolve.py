"""Turn a model name (``provider:model``) into a ready ``Backend``, from the embedded catalog or settings.

Every model has a declared family (embedded ones in the catalog, others in ``[models."provider:name"]``); the
family, never the name, selects the FIM template.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import httpx

from forgepilot.backends.base import Backend, CompletionRequest
from forgepilot.backends.embedded import EMBEDDED_MODELS, ModelStore, ProgressFn, sha256_file
from forgepilot.backends.fake import FakeBackend
from forgepilot.backends.fim import fim_template
from forgepilot.backends.llamacpp import LlamaCppBackend
from forgepilot.backends.openai_http import OpenAICompatibleBackend
from forgepilot.backends.pool import EndpointPool
from forgepilot.backends.pricing import PriceTable, builtin_price_table
from forgepilot.backends.providers import provider_profile
from forgepilot.backends.trained import LORA_SUFFIX, TrainedModel, find_trained, list_trained
from forgepilot.config import HttpSettings, ModelConfig, Settings
from forgepilot.errors import ConfigError, UnknownModel


@dataclass(frozen=True)
class ModelEntry:
    """A model users can name: embedded or declared in settings."""

    name: str
    provider: str
    family: str
    source: str  # "embedded", "trained" or "config"
    detail: str


def list_models(settings: Settings) -> list[ModelEntry]:
    entries = [
        ModelEntry(m.name, "llamacpp", m.family, "embedded", f"{m.title}, {m.size / 1e6:.0f} MB, extra [{m.extra}]")
        for m in EMBEDDED_MODELS.values()
    ]
    for t in list_trained(settings.models_dir):
        entries.append(ModelEntry(f"llamacpp:{t.name}", "llamacpp", t.family, "trained", str(t.folder / t.serve_file)))
        if t.adapter_file:
            detail = f"{t.folder / t.adapter_file} over {t.base_gguf}"
            entries.append(ModelEntry(f"llamacpp:{t.name}{LORA_SUFFIX}", "llamacpp", t.family, "trained", detail))
    for name, cfg in sorted(settings.models.items()):
        provider = cfg.provider or name.partition(":")[0]
        detail = str(cfg.path) if cfg.path else (cfg.base_url or "default endpoint")
        entries.append(ModelEntry(name, provider, cfg.family, "config", detail))
    return entries


def open_backend(
    name: str | None,
    settings: Settings,
    *,
    client: httpx.AsyncClient | None = None,
    progress: ProgressFn | None = None,
) -> Backend:
    """The backend for ``name`` (default: ``settings.default_model``); embedded models are assembled on demand."""
    name = name or settings.default_model
    prices = builtin_price_table().with_overrides(settings.prices)
    cfg = settings.models.get(name)
    provider, _, short = name.partition(":")
    if cfg is None:
        if provider == "llamacpp" and short in EMBEDDED_MODELS:
            model = EMBEDDED_MODELS[short]
            path = ModelStore(settings.models_dir).ensure(model, progress=progress)
            return LlamaCppBackend(
                name, path=path, template=fim_template(model.family), settings=settings.llama, prices=prices
            )
        if provider == "fake":
            return FakeBackend(name)
        trained = find_trained(settings.models_dir, short) if provider == "llamacpp" else None
        if trained is not None:
            return _trained_backend(name, *trained, settings=settings, prices=prices)
        raise UnknownModel(name, [m.name for m in list_models(settings)])
    return _configured_backend(name, cfg, settings, client=client, progress=progress)


def _trained_paths(model: TrainedModel, adapter: bool) -> tuple[Path, Path | None]:
    if adapter and model.adapter_file and model.base_gguf:
        return Path(model.base_gguf), model.folder / model.adapter_file
    return model.folder / model.serve_file, None


def _trained_backend(
    name: str, model: TrainedModel, adapter: bool, *, settings: Settings, prices: PriceTable
) -> LlamaCppBackend:
    path, lora = _trained_paths(model, adapter)
    return LlamaCppBackend(
        name, path=path, lora=lora, template=fim_template(model.family), settings=settings.llama, prices=prices
    )


def _configured_backend(
    name: str,
    cfg: ModelConfig,
    settings: Settings,
    *,
    client: httpx.AsyncClient | None,
    progress: ProgressFn | None,
) -> Backend:
    provider = cfg.provider or name.partition(":")[0]
    template = fim_template(cfg.family)
    prices = builtin_price_table().with_overrides(settings.prices)
    if provider == "fake":
        return FakeBackend(name, family=cfg.family)
    if provider == "llamacpp":
        short = name.partition(":")[2]
        if cfg.path is None and short in EMBEDDED_MODELS:
            path = ModelStore(settings.models_dir).ensure(EMBEDDED_MODELS[short], progress=progress)
        elif cfg.path is not None:
            path = cfg.path.expanduser()
        else:
            raise ConfigError(f"model {name} needs a path to its GGUF file", hint=f'set path under [models."{name}"]')
        return LlamaCppBackend(name, path=path, template=template, settings=settings.llama, prices=prices)
    urls: list[str | None] = [*cfg.base_urls] or [cfg.base_url]

    def server(url: str | None, http: HttpSettings) -> OpenAICompatibleBackend:
        return OpenAICompatibleBackend(
            name,
            profile=provider_profile(provider),
            template=template,
            model=cfg.model,
            base_url=url,
            api_key_env=cfg.api_key_env,
            settings=http,
            client=client,
            prices=prices,
            max_context=cfg.context_length or 8192,
        )

    if len(urls) == 1:
        return server(urls[0], settings.http)
    # Replicas: a dead server is left at once for the next one, not retried with backoff.
    single_try = settings.http.model_copy(update={"max_retries": 0})
    return EndpointPool(
        name, [server(url, single_try) for url in urls], health_interval_s=settings.http.health_interval_s
    )


#: Fixed prompts whose greedy answers identify the weights behind a model server (the same URL and model name may
#: serve other weights tomorrow): different weights answer at least one of them differently.
FINGERPRINT_PROBES = (
    "def fibonacci(n):\n",
    "The capital of France is",
    "// A function that returns the larger of two integers\nint max(int a, int b) {\n",
)


async def probe_fingerprint(backend: Backend) -> str:
    """The sha256 of ``backend``'s greedy answers to ``FINGERPRINT_PROBES`` (16 tokens each, seed 0)."""
    answers = []
    for prompt in FINGERPRINT_PROBES:
        done = await backend.complete(
            CompletionRequest(prompt=prompt, max_tokens=16, temperature=0.0, seed=0, priority="batch")
        )
        answers.append(done.text)
    return hashlib.sha256(json.dumps(answers).encode("utf-8")).hexdigest()


def model_identity(name: str, settings: Settings) -> dict[str, str]:
    """What pins a model's behaviour, for evaluation caches and the registry: provider, family and the weights.

    Embedded models are named by their pinned sha256; a declared GGUF by the sha256 of its file (read once per
    call: declared files are the user's own and may change under the same name); a server by its URL and model id,
    to which callers that may reuse its answers add ``probe_fingerprint``.
    """
    cfg = settings.models.get(name)
    provider, _, short = name.partition(":")
    if cfg is None:
        if provider == "llamacpp" and short in EMBEDDED_MODELS:
            m = EMBEDDED_MODELS[short]
            return {"name": name, "provider": provider, "family": m.family, "sha256": m.sha256, "source": "embedded"}
        trained = find_trained(settings.models_dir, short) if provider == "llamacpp" else None
        if trained is not None:
            model, adapter = trained
            path, lora = _trained_paths(model, adapter)
            ident = {"name": name, "provider": provider, "family": model.family, "source": "trained"}
            ident["sha256"] = model.sha256.get((model.adapter_file or "") if lora else model.serve_file, "")
            return ident
        return {"name": name, "provider": provider, "source": "preset"}
    out = {"name": name, "provider": cfg.provider or provider, "family": cfg.family, "source": "config"}
    if cfg.path is not None:
        path = cfg.path.expanduser()
        out["path"] = str(path)
        out["sha256"] = sha256_file(path) if path.is_file() else "missing"
    elif cfg.provider != "llamacpp" and provider != "llamacpp":
        out["base_url"] = cfg.base_url or "default"
        out["model"] = cfg.model or short
    elif short in EMBEDDED_MODELS:
        out["sha256"] = EMBEDDED_MODELS[short].sha256
    return out
