"""The price table: exact names, dated snapshots, overrides, unknown and local models."""

from __future__ import annotations

import pytest

from judgekit.cost import PRICES, call_cost, lookup_price


def test_exact_and_snapshot_names() -> None:
    assert lookup_price("gpt-4o") == PRICES["gpt-4o"]
    assert lookup_price("gpt-4o-2024-08-06") == PRICES["gpt-4o"]
    assert lookup_price("gpt-4o-mini-2024-07-18") == PRICES["gpt-4o-mini"]
    assert lookup_price("claude-sonnet-4-5-20250929") == PRICES["claude-sonnet-4-5"]


@pytest.mark.parametrize("model", ["claude-opus-4-9", "gpt-4.5-preview", "my-finetune", ""])
def test_unknown_models_have_no_price(model: str) -> None:
    """A near miss must not borrow a sibling's price: unknown is None, never a guess."""
    assert lookup_price(model) is None
    assert call_cost(model, 1000, 1000) is None


def test_cost_arithmetic_override_and_local() -> None:
    assert call_cost("gpt-4o", 1_000_000, 0) == pytest.approx(PRICES["gpt-4o"][0])
    assert call_cost("gpt-4o", 2_000, 500) == pytest.approx(
        (2_000 * PRICES["gpt-4o"][0] + 500 * PRICES["gpt-4o"][1]) / 1e6)
    assert call_cost("gpt-4o", 1_000_000, 1_000_000, {"gpt-4o": (1.0, 2.0)}) == pytest.approx(3.0)
    assert call_cost("my-finetune", 10, 10, {"my-finetune": (1.0, 1.0)}) == pytest.approx(2e-5)
    assert call_cost("anything", 10**6, 10**6, local=True) == 0.0
