"""Agent runs through the real providers against loopback servers; the ledger holds what they reported."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from paymaster import Agent, Complexity, RetryPolicy, Runtime, TaskStatus
from paymaster._money import to_picos
from paymaster.providers import AnthropicProvider, OpenAIProvider

from .loopback import (
    ANTHROPIC_KEY,
    OPENAI_KEY,
    LoopbackServer,
    Reply,
    chat_completion,
    claude_error,
    claude_message,
)

pytestmark = pytest.mark.anyio

MTOK = Decimal(1_000_000)
NO_WAIT = RetryPolicy(max_attempts=3, initial_wait=0, max_wait=0)


class Refunds(Agent):
    name = "refunds"
    instructions = "You handle refunds. Be brief."
    complexity = Complexity.MODERATE  # routes to the balanced tier: anthropic / claude-haiku-4-5


class Triage(Agent):
    name = "triage"
    complexity = Complexity.SIMPLE  # routes to the fast tier: openai / gpt-4o-mini


def lookup_order(order_id: str) -> str:
    """Find an order by its id."""
    return f"order {order_id}: 2 items, paid $40"


class RefundsWithTools(Refunds):
    name = "refunds-tools"
    tools = (lookup_order,)


@dataclass
class Setup:
    runtime: Runtime
    claude_server: LoopbackServer
    openai_server: LoopbackServer


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    claude_server, openai_server = LoopbackServer(), LoopbackServer()
    claude_server.start()
    openai_server.start()
    claude = AnthropicProvider(api_key=ANTHROPIC_KEY, base_url=claude_server.url, timeout=0.5)
    gpt = OpenAIProvider(api_key=OPENAI_KEY, base_url=f"{openai_server.url}/v1", timeout=0.5)
    runtime = Runtime(ledger=tmp_path / "ledger.db", providers={"anthropic": claude, "openai": gpt}, retry=NO_WAIT)
    try:
        yield Setup(runtime, claude_server, openai_server)
    finally:
        await claude.aclose()
        await gpt.aclose()
        runtime.close()
        claude_server.stop()
        openai_server.stop()


async def test_a_claude_run_records_the_reported_tokens_and_their_exact_cost(setup: Setup) -> None:
    usage = {"input_tokens": 100, "cache_read_input_tokens": 3_000, "cache_creation_input_tokens": 500,
             "output_tokens": 40}  # fmt: skip
    setup.claude_server.reply(Reply(200, claude_message([{"type": "text", "text": "Refund issued."}], usage=usage)))
    outcome = await setup.runtime.run(Refunds, "Refund order 1234")
    assert (outcome.status, outcome.output) == (TaskStatus.SUCCEEDED, "Refund issued.")
    (step,) = setup.runtime.ledger.steps(outcome.task_id)
    assert (step.provider, step.model, step.tier, step.status) == ("anthropic", "claude-haiku-4-5", "balanced", "ok")
    assert (step.input_tokens, step.output_tokens, step.cache_read_tokens, step.cache_write_tokens) == (
        3_600, 40, 3_000, 500,
    )  # fmt: skip
    # claude-haiku-4-5: $1 input, $0.10 cache read, $1.25 cache write, $5 output per MTok.
    hand = (100 * Decimal(1) + 3_000 * Decimal("0.10") + 500 * Decimal("1.25") + 40 * Decimal(5)) / MTOK
    assert step.cost_picos == to_picos(hand)
    assert outcome.cost_usd == hand
    # The agent's instructions went out as the system prompt, marked for caching.
    body = setup.claude_server.received[0].json()
    assert body["system"] == [
        {"type": "text", "text": "You handle refunds. Be brief.", "cache_control": {"type": "ephemeral"}}
    ]


async def test_an_openai_run_records_cached_tokens_as_part_of_the_prompt(setup: Setup) -> None:
    usage = {"prompt_tokens": 2_000, "completion_tokens": 100, "total_tokens": 2_100,
             "prompt_tokens_details": {"cached_tokens": 1_024}}  # fmt: skip
    setup.openai_server.reply(Reply(200, chat_completion(usage=usage)))
    outcome = await setup.runtime.run(Triage, "Billing question: charged twice")
    assert outcome.status is TaskStatus.SUCCEEDED
    (step,) = setup.runtime.ledger.steps(outcome.task_id)
    assert (step.provider, step.model, step.input_tokens, step.cache_read_tokens, step.output_tokens) == (
        "openai", "gpt-4o-mini", 2_000, 1_024, 100,
    )  # fmt: skip
    # gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per MTok.
    hand = (976 * Decimal("0.15") + 1_024 * Decimal("0.075") + 100 * Decimal("0.60")) / MTOK
    assert step.cost_picos == to_picos(hand) and outcome.cost_usd == hand


async def test_tool_calls_round_trip_through_the_provider(setup: Setup) -> None:
    call = {"type": "tool_use", "id": "toolu_7", "name": "lookup_order", "input": {"order_id": "1234"}}
    setup.claude_server.reply(
        Reply(200, claude_message([call], stop_reason="tool_use")),
        Reply(200, claude_message([{"type": "text", "text": "Refunded $40."}])),
    )
    outcome = await setup.runtime.run(RefundsWithTools, "Refund order 1234")
    assert (outcome.status, outcome.output) == (TaskStatus.SUCCEEDED, "Refunded $40.")
    first, second = (r.json() for r in setup.claude_server.received)
    assert first["tools"][0]["name"] == "lookup_order"
    assert second["messages"][1]["content"] == [call]
    assert second["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_7", "content": "order 1234: 2 items, paid $40"}
    ]
    model_steps = [s for s in setup.runtime.ledger.steps(outcome.task_id) if s.provider == "anthropic"]
    assert [(s.status, s.input_tokens, s.output_tokens) for s in model_steps] == [("ok", 12, 6), ("ok", 12, 6)]


async def test_an_overloaded_provider_is_retried_and_each_attempt_is_a_step(setup: Setup) -> None:
    setup.claude_server.reply(
        Reply(529, claude_error("overloaded_error", "Overloaded")),
        Reply(429, claude_error("rate_limit_error", "Slow down"), {"retry-after-ms": "10"}),
        Reply(200, claude_message()),
    )
    outcome = await setup.runtime.run(Refunds, "Refund order 1234")
    assert outcome.status is TaskStatus.SUCCEEDED
    steps = setup.runtime.ledger.steps(outcome.task_id)
    assert [(s.kind, s.attempt, s.status) for s in steps] == [("execute", 1, "error"), ("retry", 2, "error"),
                                                               ("retry", 3, "ok")]  # fmt: skip
    assert steps[0].error == "OverloadedError: anthropic: HTTP 529 overloaded_error: Overloaded"
    assert steps[1].error == "RateLimitError: anthropic: HTTP 429 rate_limit_error: Slow down"
    assert steps[0].cost_picos == steps[1].cost_picos == 0
    assert steps[2].cost_picos == to_picos((12 * Decimal(1) + 6 * Decimal(5)) / MTOK)


async def test_a_timeout_is_charged_at_its_worst_case(setup: Setup) -> None:
    setup.claude_server.reply(*(Reply(200, claude_message(), delay=10) for _ in range(3)))
    outcome = await setup.runtime.run(Refunds, "Refund order 1234")
    assert outcome.status is TaskStatus.FAILED
    steps = setup.runtime.ledger.steps(outcome.task_id)
    assert len(steps) == 3 and all(s.status == "unsettled" for s in steps)
    assert all(s.error == "ProviderTimeoutError: anthropic: request timed out" for s in steps)
    assert all(s.cost_picos == s.reserved_picos > 0 for s in steps)


async def test_a_rejected_key_fails_the_task_without_retrying_or_recording_the_key(setup: Setup) -> None:
    def echo(request: object) -> Reply:
        return Reply(401, claude_error("authentication_error", f"invalid x-api-key {ANTHROPIC_KEY}"))

    setup.claude_server.reply(echo)
    outcome = await setup.runtime.run(Refunds, "Refund order 1234")
    assert outcome.status is TaskStatus.FAILED
    (step,) = setup.runtime.ledger.steps(outcome.task_id)
    assert step.error is not None and step.error.startswith("AuthenticationError: anthropic: HTTP 401")
    task = setup.runtime.ledger.task(outcome.task_id)
    assert task is not None
    for text in (step.error, task.stop_reason or "", outcome.stop_reason or ""):
        assert ANTHROPIC_KEY not in text
