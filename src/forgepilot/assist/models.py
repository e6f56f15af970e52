"""Which model serves which task: named models opened once and shared, and the three tiers of SPEC section 1.

``large`` serves explain / refactor / document / ask, ``fast`` serves completion / tests / review / commit, and
``embed`` serves embeddings. Each tier names a model from settings (``[assist]``), defaulting to the default model;
``local:all-minilm-l6-v2`` is the embedded sentence-embedding model the index uses.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Literal

from forgepilot.backends.base import Backend, Completion, CompletionRequest
from forgepilot.backends.breaker import BreakerStatus, CircuitBreaker
from forgepilot.backends.resolve import list_models, open_backend
from forgepilot.config import Settings
from forgepilot.errors import BackendError, ConfigError, NotSupported, UnknownModel

Tier = Literal["large", "fast", "embed"]
LOCAL_EMBEDDER = "local:all-minilm-l6-v2"

TASK_TIERS: dict[str, Tier] = {
    "complete": "fast",
    "explain": "large",
    "refactor": "large",
    "document": "large",
    "ask": "large",
    "tests": "fast",
    "review": "fast",
    "commit": "fast",
}


class LocalEmbeddingBackend(Backend):
    """The index's embedded all-MiniLM-L6-v2 served as a model (embeddings only)."""

    can_embed = True
    max_context = 256

    def __init__(self, name: str = LOCAL_EMBEDDER) -> None:
        super().__init__(name)
        from forgepilot.index.vectors import Embedder

        self._embedder = Embedder()

    async def complete(self, request: CompletionRequest) -> Completion:
        raise NotSupported(self.name, "completion (it is an embedding model)")

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = await asyncio.to_thread(self._embedder.encode, list(texts))
        return [[float(x) for x in row] for row in vectors]


class ModelPool:
    """Backends by name, opened on first use and kept; ``preset`` backends (tests, benchmarks) are used as given."""

    def __init__(self, settings: Settings, preset: Mapping[str, Backend] | None = None) -> None:
        self.settings = settings
        self._backends: dict[str, Backend] = dict(preset or {})
        self._preset = set(self._backends)
        self._lock = threading.Lock()
        # Settings and presets are fixed for the pool's life: the names are listed once, not per request.
        names = list(self._backends)
        names += [m.name for m in list_models(settings) if m.name not in names]
        if LOCAL_EMBEDDER not in names:
            names.append(LOCAL_EMBEDDER)
        self._names = names
        self._known = frozenset(names)
        self._breakers: dict[str, CircuitBreaker] = {}
        for model, fallback in settings.assist.fallbacks.items():
            for named in (model, fallback):
                if named not in self._known:
                    raise ConfigError(
                        f"[assist] fallbacks names an unknown model {named!r}",
                        hint=f"known models: {', '.join(names)}",
                    )

    def names(self) -> list[str]:
        """Every model a request may name, in a stable order."""
        return list(self._names)

    def tier_model(self, tier: Tier) -> str:
        a = self.settings.assist
        chosen = {"large": a.large, "fast": a.fast, "embed": a.embed}[tier]
        return chosen or self.settings.default_model

    def task_model(self, task: str) -> str:
        """The model of the tier that serves ``task`` (``TASK_TIERS``; other tasks go to ``large``)."""
        return self.tier_model(TASK_TIERS.get(task, "large"))

    def get(self, name: str | None = None) -> Backend:
        name = name or self.settings.default_model
        with self._lock:
            found = self._backends.get(name)
            if found is not None:
                return found
            if name == LOCAL_EMBEDDER:
                backend: Backend = LocalEmbeddingBackend()
            else:
                self.ensure_known(name)
                backend = open_backend(name, self.settings)
            self._backends[name] = backend
            return backend

    # -- circuit breakers and fallbacks -------------------------------------------------------------------
    def fallback_of(self, name: str) -> str | None:
        return self.settings.assist.fallbacks.get(name)

    def _breaker(self, name: str) -> CircuitBreaker:
        with self._lock:
            found = self._breakers.get(name)
            if found is None:
                a = self.settings.assist
                found = self._breakers[name] = CircuitBreaker(
                    failures=a.breaker_failures, slow_s=a.breaker_slow_s, open_s=a.breaker_open_s
                )
            return found

    def route(self, name: str) -> str:
        """The model that serves a request for ``name`` now: ``name``, or its fallback while its breaker is open.

        Only a model with a fallback has a breaker (without one there is nowhere else to send the request).
        """
        fallback = self.fallback_of(name)
        if fallback is None or self._breaker(name).allow():
            return name
        return fallback

    def record(self, name: str, ok: bool, seconds: float, error: str | None = None) -> None:
        """The outcome of a call routed to ``name`` (only models with a fallback keep a breaker)."""
        if self.fallback_of(name) is not None:
            self._breaker(name).record(ok, seconds, error)

    @contextmanager
    def watched(self, name: str) -> Iterator[None]:
        """A call to ``name``'s backend, its outcome (failed, slow or good) counted by ``name``'s breaker."""
        started = time.perf_counter()
        try:
            yield
        except BackendError as exc:
            self.record(name, False, time.perf_counter() - started, exc.one_line())
            raise
        self.record(name, True, time.perf_counter() - started)

    def breakers(self) -> dict[str, BreakerStatus]:
        """Each model with a fallback and the state of its breaker."""
        return {name: self._breaker(name).status() for name in self.settings.assist.fallbacks}

    def ensure_known(self, name: str) -> None:
        """Raise ``UnknownModel`` (listing the known ones) unless ``name`` can be opened."""
        if name not in self._known:  # embedded, declared in settings, or preset
            raise UnknownModel(name, self.names())

    async def aclose(self) -> None:
        for name, backend in list(self._backends.items()):
            if name not in self._preset:
                await backend.aclose()
