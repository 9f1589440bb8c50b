"""Prices come from genai-prices and agree with it to the last digit; the byte bound really bounds."""

from __future__ import annotations

from decimal import Decimal

import pytest
from genai_prices import Usage as GPUsage
from genai_prices import calc_price
from hypothesis import given, settings
from hypothesis import strategies as st

from paymaster import Message, ModelRequest, PriceBook, Usage
from paymaster._money import from_picos, to_picos
from paymaster.pricing import bound_prompt_tokens, count_tokens, estimate_prompt_tokens

MODELS = [
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4o"),
    ("anthropic", "claude-haiku-4-5"),
    ("anthropic", "claude-sonnet-4-5"),
]


@pytest.mark.parametrize(("provider", "model"), MODELS)
@given(
    uncached=st.integers(0, 400_000),
    cache_read=st.integers(0, 100_000),
    cache_write=st.integers(0, 50_000),
    output=st.integers(0, 64_000),
)
@settings(max_examples=60, deadline=None)
def test_cost_matches_genai_prices_including_cache_and_long_context_tiers(
    provider: str, model: str, uncached: int, cache_read: int, cache_write: int, output: int
) -> None:
    if provider == "openai":
        cache_write = 0  # OpenAI has no cache-write price
    prices = PriceBook().get(provider, model)
    assert prices is not None
    total_in = uncached + cache_read + cache_write
    usage = Usage(input_tokens=total_in, output_tokens=output, cache_read_tokens=cache_read,
                  cache_write_tokens=cache_write)
    theirs = calc_price(
        GPUsage(input_tokens=total_in, output_tokens=output, cache_read_tokens=cache_read,
                cache_write_tokens=cache_write),
        model_ref=model, provider_id=provider,
    ).total_price
    assert prices.cost(usage) == theirs


@given(input_tokens=st.integers(0, 300_000), output_tokens=st.integers(0, 20_000), read=st.integers(0, 100))
def test_worst_case_is_never_below_the_actual_cost(input_tokens: int, output_tokens: int, read: int) -> None:
    prices = PriceBook().get("anthropic", "claude-sonnet-4-5")
    assert prices is not None
    cached = input_tokens * read // 100
    actual = prices.cost(Usage(input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cached))
    assert prices.worst_case(input_tokens, output_tokens) >= actual


def test_unknown_model_has_no_price_not_a_zero_price() -> None:
    assert PriceBook().get("openai", "no-such-model-xyz") is None


@given(st.text(min_size=0, max_size=400))
@settings(max_examples=200)
def test_byte_bound_is_never_below_the_token_count(text: str) -> None:
    request = ModelRequest(model="m", messages=(Message(role="user", content=text),), max_tokens=1, system=text)
    assert bound_prompt_tokens(request) >= estimate_prompt_tokens(request)
    assert len(text.encode()) >= count_tokens(text)


@given(st.decimals(min_value=0, max_value=10**6, places=12, allow_nan=False, allow_infinity=False))
def test_picos_round_trip_exactly_for_twelve_decimals(usd: Decimal) -> None:
    assert from_picos(to_picos(usd)) == usd


def test_sub_pico_amounts_round_up_never_down() -> None:
    assert to_picos(Decimal("0.0000000000001")) == 1
