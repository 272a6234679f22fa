"""Estimated spend: token counts times a per-model price table (USD per million tokens)."""

from __future__ import annotations

import json

# List prices in USD per 1M tokens (input, output) as known when this was written; override with LLM_PRICES.
DEFAULT_PRICES = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "fake-llm": (0.0, 0.0),
}


class BadPrices(ValueError):
    """LLM_PRICES is not a JSON object of model -> [input, output] prices."""


def parse_prices(raw: str) -> dict[str, tuple[float, float]]:
    """The price table: the defaults, updated with LLM_PRICES ('{"model": [in, out], ...}', USD per 1M tokens)."""
    table = dict(DEFAULT_PRICES)
    if not raw:
        return table
    try:
        given = json.loads(raw)
        table.update({str(model): (float(price[0]), float(price[1])) for model, price in given.items()})
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise BadPrices(f'LLM_PRICES must be a JSON object like {{"my-model": [0.15, 0.6]}}, got {raw[:80]!r}') from exc
    return table


def price_for(model: str, table: dict[str, tuple[float, float]]) -> tuple[float, float] | None:
    """The longest table entry that is a prefix of the model name (dated snapshots share their base price)."""
    matches = [name for name in table if model == name or model.startswith(name + "-")]
    return table[max(matches, key=len)] if matches else None


def estimate_cost(
    model: str, prompt_tokens: int, completion_tokens: int, table: dict[str, tuple[float, float]]
) -> float | None:
    """USD for these tokens, or None when the model has no price (never a made-up number)."""
    price = price_for(model, table)
    if price is None:
        return None
    return round((prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000, 6)
