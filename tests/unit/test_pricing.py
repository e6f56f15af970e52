from __future__ import annotations

import pytest

from forgepilot.backends.base import Usage
from forgepilot.backends.pricing import builtin_price_table
from forgepilot.config import PriceOverride


def test_local_models_cost_zero() -> None:
    cost = builtin_price_table().cost("llamacpp:qwen2.5-coder-0.5b", Usage(1000, 1000))
    assert cost.usd == 0.0
    assert cost.price_table_version == builtin_price_table().version


def test_remote_model_priced_per_million_tokens() -> None:
    # gpt-4o-mini: 0.15 in, 0.075 cached in, 0.60 out per million tokens.
    usage = Usage(prompt_tokens=2_000, completion_tokens=500, cached_prompt_tokens=1_000)
    cost = builtin_price_table().cost("openai:gpt-4o-mini", usage)
    assert cost.usd == pytest.approx((1_000 * 0.15 + 1_000 * 0.075 + 500 * 0.60) / 1e6)


def test_unpriced_remote_model_has_no_cost_rather_than_zero() -> None:
    assert builtin_price_table().cost("openai:some-new-model", Usage(10, 10)).usd is None


def test_overrides_change_version() -> None:
    table = builtin_price_table().with_overrides({"openai:mine": PriceOverride(input_per_mtok=1, output_per_mtok=2)})
    assert table.version.endswith("+local")
    assert table.cost("openai:mine", Usage(1_000_000, 1_000_000)).usd == pytest.approx(3.0)
