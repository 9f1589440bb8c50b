"""Prices per model and token counting."""

from ._prices import ModelPrices, PriceBook, Rates, parse_price_overrides
from ._tokens import bound_prompt_tokens, count_tokens, estimate_prompt_tokens

__all__ = [
    "ModelPrices",
    "PriceBook",
    "Rates",
    "bound_prompt_tokens",
    "count_tokens",
    "estimate_prompt_tokens",
    "parse_price_overrides",
]
