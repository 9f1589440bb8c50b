"""Prices per model and token counting."""

from ._estimate import expected_cost, expected_usage, prefix_tokens
from ._prices import ModelPrices, PriceBook, Rates, parse_price_overrides
from ._tokens import bound_prompt_tokens, count_tokens, estimate_prompt_tokens

__all__ = [
    "ModelPrices",
    "PriceBook",
    "Rates",
    "bound_prompt_tokens",
    "count_tokens",
    "estimate_prompt_tokens",
    "expected_cost",
    "expected_usage",
    "parse_price_overrides",
    "prefix_tokens",
]
