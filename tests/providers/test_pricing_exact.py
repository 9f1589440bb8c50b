"""A call's reported usage, priced by PriceBook, equals a hand computation from published prices."""

from __future__ import annotations

from decimal import Decimal

import pytest

from paymaster.pricing import PriceBook, bound_prompt_tokens, estimate_prompt_tokens
from paymaster.pricing._estimate import expected_cost, expected_usage, prefix_tokens
from paymaster.providers import AnthropicProvider, Message, ModelRequest, OpenAIProvider, ToolSpec, Usage

from .loopback import ANTHROPIC_KEY, OPENAI_KEY, LoopbackServer, Reply, chat_completion, claude_message

pytestmark = pytest.mark.anyio

MTOK = Decimal(1_000_000)


def ask(model: str) -> ModelRequest:
    return ModelRequest(model=model, system="You are a support agent.", messages=(Message(role="user", content="Hi"),),
                        max_tokens=1024)  # fmt: skip


# claude-sonnet-4-5 is the default "deep" tier; the SDK warns that it is deprecated.
@pytest.mark.filterwarnings("ignore:The model 'claude-sonnet-4-5' is deprecated:DeprecationWarning")
async def test_claude_sonnet_4_5_with_cache_reads_and_writes(server: LoopbackServer) -> None:
    usage = {
        "input_tokens": 1_200,
        "cache_read_input_tokens": 20_000,
        "cache_creation_input_tokens": 3_000,
        "output_tokens": 800,
    }
    server.reply(Reply(200, claude_message(usage=usage, model="claude-sonnet-4-5-20250929")))
    provider = AnthropicProvider(api_key=ANTHROPIC_KEY, base_url=server.url)
    try:
        response = await provider.complete(ask("claude-sonnet-4-5"))
    finally:
        await provider.aclose()
    prices = PriceBook().get("anthropic", response.model)
    assert prices is not None
    # Published: $3 input, $0.30 cache read, $3.75 cache write (5 min), $15 output, per million tokens.
    hand = (1_200 * Decimal(3) + 20_000 * Decimal("0.30") + 3_000 * Decimal("3.75") + 800 * Decimal(15)) / MTOK
    assert hand == Decimal("0.03285")
    assert prices.cost(response.usage) == hand


async def test_a_long_cached_prompt_is_priced_at_the_long_context_rates(server: LoopbackServer) -> None:
    # Only 1,000 tokens are uncached, but the whole prompt is 251,000: over the 200k line, every
    # token is charged at the higher rates. Counting the prompt whole at the boundary is what
    # makes that visible to the price book.
    usage = {"input_tokens": 1_000, "cache_read_input_tokens": 250_000, "output_tokens": 100}
    server.reply(Reply(200, claude_message(usage=usage)))
    provider = AnthropicProvider(api_key=ANTHROPIC_KEY, base_url=server.url)
    try:
        response = await provider.complete(ask("claude-sonnet-4-6"))
    finally:
        await provider.aclose()
    assert response.usage == Usage(input_tokens=251_000, output_tokens=100, cache_read_tokens=250_000)
    prices = PriceBook().get("anthropic", "claude-sonnet-4-5")
    assert prices is not None
    hand = (1_000 * Decimal(6) + 250_000 * Decimal("0.60") + 100 * Decimal("22.5")) / MTOK
    assert prices.cost(response.usage) == hand


async def test_gpt_4o_with_cached_tokens(server: LoopbackServer) -> None:
    usage = {
        "prompt_tokens": 5_000,
        "completion_tokens": 500,
        "total_tokens": 5_500,
        "prompt_tokens_details": {"cached_tokens": 3_840},
    }
    server.reply(Reply(200, chat_completion(usage=usage)))
    provider = OpenAIProvider(api_key=OPENAI_KEY, base_url=f"{server.url}/v1")
    try:
        response = await provider.complete(ask("gpt-4o"))
    finally:
        await provider.aclose()
    prices = PriceBook().get("openai", "gpt-4o")
    assert prices is not None
    # Published: $2.50 input, $1.25 cached input, $10 output, per million tokens.
    hand = (1_160 * Decimal("2.50") + 3_840 * Decimal("1.25") + 500 * Decimal(10)) / MTOK
    assert hand == Decimal("0.0127")
    assert prices.cost(response.usage) == hand


def test_expected_cost_counts_a_cached_prefix_at_the_cache_read_rate() -> None:
    tool = ToolSpec(name="lookup_order", description="Find an order by id.")
    request = ModelRequest(
        model="claude-haiku-4-5", system="You are a refunds agent. " * 200,
        messages=(Message(role="user", content="Refund order 1234"),), max_tokens=300, tools=(tool,),
    )  # fmt: skip
    prices = PriceBook().get("anthropic", "claude-haiku-4-5")
    assert prices is not None
    prompt = estimate_prompt_tokens(request)
    prefix = prefix_tokens(request)
    assert 0 < prefix < prompt
    # claude-haiku-4-5: $1 input, $0.10 cache read, $1.25 cache write, $5 output per MTok.
    hit = expected_cost(prices, request, cached_prefix_tokens=prefix, output_tokens=200)
    assert hit == ((prompt - prefix) * Decimal(1) + prefix * Decimal("0.10") + 200 * Decimal(5)) / MTOK
    first = expected_cost(prices, request, cache_write_tokens=prefix, output_tokens=200)
    assert first == ((prompt - prefix) * Decimal(1) + prefix * Decimal("1.25") + 200 * Decimal(5)) / MTOK
    cold = expected_cost(prices, request, output_tokens=200)
    assert hit < cold < first
    # An estimate never exceeds the reservation's bound.
    assert expected_cost(prices, request, cache_write_tokens=prompt) <= prices.worst_case(
        bound_prompt_tokens(request), request.max_tokens
    )


def test_expected_usage_clamps_the_cached_parts_to_the_prompt() -> None:
    request = ModelRequest(model="gpt-4o", messages=(Message(role="user", content="Hi"),), max_tokens=50)
    prompt = estimate_prompt_tokens(request)
    usage = expected_usage(request, cached_prefix_tokens=10**6, cache_write_tokens=10**6)
    assert usage == Usage(input_tokens=prompt, output_tokens=50, cache_read_tokens=prompt)
    with pytest.raises(ValueError, match=">= 0"):
        expected_usage(request, cached_prefix_tokens=-1)
