"""Cost of a request from the versioned price table shipped in ``prices.toml`` plus overrides from settings."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

from forgepilot.backends.base import Cost, Usage
from forgepilot.config import PriceOverride


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None

    def cost(self, usage: Usage) -> float:
        cached = min(usage.cached_prompt_tokens, usage.prompt_tokens)
        cached_rate = self.input_per_mtok if self.cached_input_per_mtok is None else self.cached_input_per_mtok
        return (
            (usage.prompt_tokens - cached) * self.input_per_mtok
            + cached * cached_rate
            + usage.completion_tokens * self.output_per_mtok
        ) / 1_000_000


@dataclass(frozen=True)
class PriceTable:
    version: str
    providers: Mapping[str, float]  # flat per-token price for every model of a provider (0 for local ones)
    models: Mapping[str, Price]

    def price(self, model: str) -> Price | None:
        if model in self.models:
            return self.models[model]
        provider = model.partition(":")[0]
        if provider in self.providers:
            flat = self.providers[provider]
            return Price(flat, flat)
        return None

    def cost(self, model: str, usage: Usage) -> Cost:
        price = self.price(model)
        return Cost(usd=None if price is None else price.cost(usage), price_table_version=self.version)

    def with_overrides(self, overrides: Mapping[str, PriceOverride]) -> PriceTable:
        if not overrides:
            return self
        merged = dict(self.models)
        for name, o in overrides.items():
            merged[name] = Price(o.input_per_mtok, o.output_per_mtok, o.cached_input_per_mtok)
        return PriceTable(version=f"{self.version}+local", providers=self.providers, models=merged)


@lru_cache(maxsize=1)
def builtin_price_table() -> PriceTable:
    data = tomllib.loads(files("forgepilot.backends").joinpath("prices.toml").read_text(encoding="utf-8"))
    return PriceTable(
        version=str(data["version"]),
        providers={k: float(v) for k, v in data.get("providers", {}).items()},
        models={k: Price(**v) for k, v in data.get("models", {}).items()},
    )
