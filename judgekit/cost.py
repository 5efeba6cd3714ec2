"""What a call cost, in USD, from a price table the user can override.

Prices are USD per 1M tokens (input, output): the providers' list prices for the standard tier and
short contexts, as published when this table was last updated (2026; no long-context rates).
`PRICES` holds the standard (online) prices; `BATCH_PRICES` the batch prices, which both
OpenAI's Batch API and Anthropic's Message Batches bill at half the standard price
(`BATCH_DISCOUNT`); calls through `judgekit.batch_api` are counted at those (`tier="batch"`).
They change, so pass `prices=` to a backend (or edit `PRICES`) for your contract. A dated
snapshot name ("gpt-4o-2024-08-06", "claude-sonnet-4-5-20250929") uses its base name's price. An unknown
model costs None (not 0: unknown is not free); a model served locally (embedded/hf/gguf, or an
OpenAI-compatible server on a loopback address) costs 0.0.

Prompt caching has its own table, `CACHE_PRICES`: (cache read, cache write) USD per 1M prompt
tokens. A cache read is a prompt token the provider served from its prompt cache (OpenAI
`cached_tokens`, Anthropic `cache_read_input_tokens`); a cache write is one it stored (Anthropic
`cache_creation_input_tokens`, 5-minute cache; OpenAI charges nothing extra for writing, so its
write price is the input price). Both are part of a call's prompt tokens; the rest of the prompt
is billed at the input price, and so is every prompt token of a model without a cache price.
Batch requests get `BATCH_DISCOUNT` on cache prices too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

Price = tuple[float, float]
"""(USD per 1M input tokens, USD per 1M output tokens)."""

CachePrice = tuple[float, float]
"""(USD per 1M cache-read prompt tokens, USD per 1M cache-write prompt tokens)."""

PRICES: dict[str, Price] = {
    # OpenAI (standard tier, short context)
    "gpt-5.5": (5.00, 30.00),
    "gpt-5.4": (2.50, 15.00),
    "gpt-5.4-mini": (0.75, 4.50),
    "gpt-5.4-nano": (0.20, 1.25),
    "gpt-5.2": (1.75, 14.00),
    "gpt-5.1": (1.25, 10.00),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o1": (15.00, 60.00),
    "o1-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    # Anthropic
    "claude-opus-5": (5.00, 25.00),
    "claude-opus-4-8": (5.00, 25.00),
    "claude-opus-4-7": (5.00, 25.00),
    "claude-opus-4-6": (5.00, 25.00),
    "claude-opus-4-5": (5.00, 25.00),
    "claude-opus-4-1": (15.00, 75.00),
    "claude-opus-4-0": (15.00, 75.00),
    "claude-opus-4": (15.00, 75.00),
    "claude-sonnet-5": (3.00, 15.00),
    "claude-sonnet-4-6": (3.00, 15.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-sonnet-4-0": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-opus": (15.00, 75.00),
    "claude-3-haiku": (0.25, 1.25),
}

BATCH_DISCOUNT = 0.5
"""Batch requests cost this fraction of the standard price (OpenAI Batch API and Anthropic Message
Batches both give 50% off, input and output alike)."""

BATCH_PRICES: dict[str, Price] = {
    name: (inp * BATCH_DISCOUNT, out * BATCH_DISCOUNT) for name, (inp, out) in PRICES.items()}
"""Batch prices, USD per 1M tokens: every `PRICES` entry at `BATCH_DISCOUNT`."""

PriceTier = Literal["standard", "batch"]
"""Which table a call is priced from: online requests are `standard`, batch requests `batch`."""

CACHE_PRICES: dict[str, CachePrice] = {
    # OpenAI: reads at the published cached-input price (GPT-5 family 10% of input, GPT-4.1 25%,
    # GPT-4o and o-series 50%; gpt-5.4 and gpt-5.5 follow the GPT-5 family's 10%); writes free.
    "gpt-5.5": (0.50, 5.00),
    "gpt-5.4": (0.25, 2.50),
    "gpt-5.4-mini": (0.075, 0.75),
    "gpt-5.4-nano": (0.02, 0.20),
    "gpt-5.2": (0.175, 1.75),
    "gpt-5.1": (0.125, 1.25),
    "gpt-5": (0.125, 1.25),
    "gpt-5-mini": (0.025, 0.25),
    "gpt-5-nano": (0.005, 0.05),
    "gpt-4.1": (0.50, 2.00),
    "gpt-4.1-mini": (0.10, 0.40),
    "gpt-4.1-nano": (0.025, 0.10),
    "gpt-4o": (1.25, 2.50),
    "gpt-4o-mini": (0.075, 0.15),
    "o1": (7.50, 15.00),
    "o1-mini": (0.55, 1.10),
    "o3": (0.50, 2.00),
    "o3-mini": (0.55, 1.10),
    "o4-mini": (0.275, 1.10),
    # Anthropic: reads 0.1x the input price, 5-minute writes 1.25x.
    "claude-opus-5": (0.50, 6.25),
    "claude-opus-4-8": (0.50, 6.25),
    "claude-opus-4-7": (0.50, 6.25),
    "claude-opus-4-6": (0.50, 6.25),
    "claude-opus-4-5": (0.50, 6.25),
    "claude-opus-4-1": (1.50, 18.75),
    "claude-opus-4-0": (1.50, 18.75),
    "claude-opus-4": (1.50, 18.75),
    "claude-sonnet-5": (0.30, 3.75),
    "claude-sonnet-4-6": (0.30, 3.75),
    "claude-sonnet-4-5": (0.30, 3.75),
    "claude-sonnet-4-0": (0.30, 3.75),
    "claude-sonnet-4": (0.30, 3.75),
    "claude-haiku-4-5": (0.10, 1.25),
    "claude-3-7-sonnet": (0.30, 3.75),
    "claude-3-5-sonnet": (0.30, 3.75),
    "claude-3-5-haiku": (0.08, 1.00),
    "claude-3-opus": (1.50, 18.75),
    "claude-3-haiku": (0.03, 0.30),
}

LOCAL_PROVIDERS = frozenset({"embedded", "hf", "gguf", "local"})

_SNAPSHOT = re.compile(r"^(?P<base>.+?)-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


def lookup_price(model: str, prices: Mapping[str, Price] | None = None,
                 tier: PriceTier = "standard") -> Price | None:
    """The (input, output) price of `model`: user table first, then `PRICES` (`BATCH_PRICES` for
    `tier="batch"`: a user table passed with that tier holds batch prices); None if unknown.

    Only an exact name or a dated snapshot of one ("<name>-2024-08-06", "<name>-20250929",
    "<name>-latest") matches: "claude-opus-4-9" must not silently get "claude-opus-4"'s price.
    """
    return _lookup(model, prices, BATCH_PRICES if tier == "batch" else PRICES)


def lookup_cache_price(model: str, cache_prices: Mapping[str, CachePrice] | None = None
                       ) -> CachePrice | None:
    """The (cache read, cache write) price of `model`, matched like `lookup_price`."""
    return _lookup(model, cache_prices, CACHE_PRICES)


def _lookup(model: str, first: Mapping[str, tuple[float, float]] | None,
            table: Mapping[str, tuple[float, float]]) -> tuple[float, float] | None:
    snapshot = _SNAPSHOT.match(model)
    base = snapshot.group("base") if snapshot else None
    for t in (first or {}, table):
        if model in t:
            return t[model]
        if base is not None and base in t:
            return t[base]
    return None


def call_cost(
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    prices: Mapping[str, Price] | None = None,
    *,
    local: bool = False,
    tier: PriceTier = "standard",
    cached_prompt_tokens: int = 0,
    cache_write_tokens: int = 0,
    cache_prices: Mapping[str, CachePrice] | None = None,
) -> float | None:
    """USD for one call at the `tier`'s prices; 0.0 when `local`, None when the model has no
    known price.

    `cached_prompt_tokens` and `cache_write_tokens` are part of `prompt_tokens`, billed at the
    model's cache prices (`CACHE_PRICES`, overridden by `cache_prices`) where it has them."""
    if local:
        return 0.0
    price = lookup_price(model, prices, tier)
    if price is None:
        return None
    cache_price = lookup_cache_price(model, cache_prices)
    if cache_price is not None and tier == "batch":  # the batch tier discounts cache tokens too
        cache_price = (cache_price[0] * BATCH_DISCOUNT, cache_price[1] * BATCH_DISCOUNT)
    read, write = cache_price or (price[0], price[0])
    cached = max(0, min(cached_prompt_tokens, prompt_tokens))
    written = max(0, min(cache_write_tokens, prompt_tokens - cached))
    plain = prompt_tokens - cached - written
    return (plain * price[0] + cached * read + written * write
            + completion_tokens * price[1]) / 1_000_000
