"""End to end: an agent runs, and every ledger row's cost is its tokens times its model's prices."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import anyio
import pytest
from genai_prices import Usage as GPUsage
from genai_prices import calc_price

from paymaster import Agent, Budget, Complexity, ModelRequest, Runtime, ScriptedProvider, TaskStatus, Usage
from paymaster._money import from_picos
from paymaster.errors import BadRequestError, ProviderTimeoutError
from paymaster.executors import RetryPolicy
from paymaster.ledger import Ledger

pytestmark = pytest.mark.ledgers  # every ledger_path test runs on SQLite and PostgreSQL

# Published prices per million tokens (input, output), as genai-prices ships them.
PUBLISHED = {
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.60")),
    "claude-haiku-4-5": (Decimal("1"), Decimal("5")),
    "claude-sonnet-4-6": (Decimal("3"), Decimal("15")),
}


class Summariser(Agent):
    name = "summariser"
    budget = Budget(usd="0.05", steps=5)


class Triage(Agent):
    name = "triage"
    complexity = Complexity.SIMPLE


def test_quick_start_runs_and_every_row_costs_tokens_times_prices(runtime: Runtime) -> None:
    outcome = runtime.run_sync(
        Summariser, "Summarise: The launch slipped a week. Costs fell 12%.", tenant="acme", tags={"team": "support"}
    )
    assert outcome.status is TaskStatus.SUCCEEDED
    assert outcome.output == "The launch slipped a week. Costs fell 12%."
    steps = runtime.ledger.steps(outcome.task_id)
    assert len(steps) == 1
    total = Decimal(0)
    for step in steps:
        assert step.model is not None and step.cost_picos is not None
        price_in, price_out = PUBLISHED[step.model]
        hand = (step.input_tokens * price_in + step.output_tokens * price_out) / 1_000_000
        assert from_picos(step.cost_picos) == hand
        independent = calc_price(
            GPUsage(input_tokens=step.input_tokens, output_tokens=step.output_tokens),
            model_ref=step.model, provider_id="anthropic",
        ).total_price
        assert from_picos(step.cost_picos) == independent
        total += hand
    assert outcome.cost_usd == total
    task = runtime.ledger.task(outcome.task_id)
    assert task is not None
    assert (task.agent, task.tenant, task.tags, task.status) == ("summariser", "acme", {"team": "support"}, "succeeded")
    assert from_picos(task.cost_picos) == total


def test_cached_tokens_are_priced_at_the_cache_rates(ledger_path: Path) -> None:
    usage = Usage(input_tokens=10_000, output_tokens=500, cache_read_tokens=8_000, cache_write_tokens=1_000)
    with Runtime(ledger=ledger_path, provider=ScriptedProvider(usage=usage)) as rt:
        outcome = rt.run_sync(Summariser, "Summarise: anything.")
    # claude-haiku-4-5: $1 input, $0.10 cache read, $1.25 cache write, $5 output per MTok.
    hand = (1_000 * Decimal(1) + 8_000 * Decimal("0.1") + 1_000 * Decimal("1.25") + 500 * Decimal(5)) / 10**6
    assert outcome.cost_usd == hand
    # The deepest tier (claude-sonnet-4-6) prices the same tokens for the baseline.
    assert outcome.baseline_usd == (1_000 * 3 + 8_000 * Decimal("0.3") + 1_000 * Decimal("3.75") + 500 * 15) / 10**6


def test_simple_work_routes_to_the_cheapest_tier_and_says_why(runtime: Runtime) -> None:
    outcome = runtime.run_sync(Triage, "Billing. Charged twice.")
    (step,) = runtime.ledger.steps(outcome.task_id)
    assert (step.tier, step.model) == ("fast", "gpt-4o-mini")
    assert step.note == "complexity=simple -> fast (tier table)"
    task = runtime.ledger.task(outcome.task_id)
    assert task is not None and task.plan is not None
    assert task.plan["subtasks"][0]["tier"] == "fast"


def test_usd_cap_below_one_calls_worst_case_makes_no_call(ledger_path: Path) -> None:
    provider = ScriptedProvider()
    with Runtime(ledger=ledger_path, provider=provider) as rt:
        outcome = rt.run_sync(Summariser, "Summarise: a long report.", budget=Budget(usd="0.001"))
        steps = rt.ledger.steps(outcome.task_id)
    assert provider.calls == []
    assert outcome.status is TaskStatus.BUDGET_EXCEEDED
    assert outcome.cost_usd == 0
    assert outcome.stop_reason is not None and outcome.stop_reason.startswith("usd cap")
    (step,) = steps
    assert step.status == "refused"
    assert step.error is not None and "usd cap" in step.error and "$0.001" in step.error
    assert step.reserved_picos > 10**9  # the worst case it would have had to hold (> $0.001)


def test_token_and_step_caps_refuse_before_the_call(ledger_path: Path) -> None:
    provider = ScriptedProvider()
    with Runtime(ledger=ledger_path, provider=provider) as rt:
        by_tokens = rt.run_sync(Summariser, "Summarise: x.", budget=Budget(tokens=100))
        by_steps = rt.ledger.steps(rt.run_sync(Summariser, "Summarise: x.", budget=Budget(steps=0)).task_id)
    assert provider.calls == []
    assert by_tokens.status is TaskStatus.BUDGET_EXCEEDED
    assert by_tokens.stop_reason is not None and by_tokens.stop_reason.startswith("tokens cap")
    assert by_steps[0].status == "refused" and by_steps[0].error is not None
    assert by_steps[0].error.startswith("steps cap")


def test_a_failed_call_is_recorded_and_the_task_fails_cleanly(ledger_path: Path) -> None:
    provider = ScriptedProvider([BadRequestError("prompt too long", provider="scripted", status_code=400)])
    with Runtime(ledger=ledger_path, provider=provider) as rt:
        outcome = rt.run_sync(Summariser, "Summarise: x.")
        (step,) = rt.ledger.steps(outcome.task_id)
        account = rt.ledger.account(f"task:{outcome.task_id}")
    assert outcome.status is TaskStatus.FAILED
    assert outcome.stop_reason == "BadRequestError: prompt too long"
    assert (step.status, step.cost_picos, step.error) == ("error", 0, "BadRequestError: prompt too long")
    assert account is not None and account.reserved_picos == 0 and account.spent_picos == 0


def test_a_timed_out_call_is_charged_at_its_worst_case_then_retried(ledger_path: Path) -> None:
    provider = ScriptedProvider([ProviderTimeoutError("timed out after 30s", provider="scripted")])
    with Runtime(ledger=ledger_path, provider=provider, retry=RetryPolicy(initial_wait=0)) as rt:
        outcome = rt.run_sync(Summariser, "Summarise: x.")
        timed_out, retried = rt.ledger.steps(outcome.task_id)
        account = rt.ledger.account(f"task:{outcome.task_id}")
    assert outcome.status is TaskStatus.SUCCEEDED
    assert (timed_out.kind, timed_out.status, timed_out.attempt) == ("execute", "unsettled", 1)
    assert timed_out.cost_picos == timed_out.reserved_picos > 0
    assert (retried.kind, retried.status, retried.attempt) == ("retry", "ok", 2)
    assert retried.cost_picos is not None
    assert account is not None and account.reserved_picos == 0
    assert account.spent_picos == timed_out.reserved_picos + retried.cost_picos
    assert outcome.cost_usd == from_picos(account.spent_picos)


def test_unknown_price_without_usd_cap_is_recorded_as_unknown_not_zero(ledger_path: Path) -> None:
    from paymaster import Tier

    tiers = [Tier(name="mine", provider="local", model="my-finetune")]
    with Runtime(ledger=ledger_path, provider=ScriptedProvider(), tiers=tiers) as rt:
        outcome = rt.run_sync(Triage, "Billing. x")
        (step,) = rt.ledger.steps(outcome.task_id)
    assert outcome.status is TaskStatus.SUCCEEDED
    assert outcome.cost_usd is None
    assert step.cost_picos is None and step.input_tokens > 0


def test_price_override_file_prices_a_local_model(ledger_path: Path, tmp_path: Path) -> None:

    config = tmp_path / "paymaster.toml"
    config.write_text(
        '[tiers.local]\nprovider = "local"\nmodel = "gemma-3-270m"\nmax_tokens = 256\n\n'
        '[prices."local/gemma-3-270m"]\ninput_mtok = "0.02"\noutput_mtok = "0.04"\n'
    )
    with Runtime(ledger=ledger_path, provider=ScriptedProvider(), config=config) as rt:
        outcome = rt.run_sync(Summariser, "Summarise: One. Two. Three.")
        (step,) = rt.ledger.steps(outcome.task_id)
    assert step.tier == "local" and step.cost_picos is not None
    hand = (step.input_tokens * Decimal("0.02") + step.output_tokens * Decimal("0.04")) / 10**6
    assert outcome.cost_usd == hand == from_picos(step.cost_picos)


@pytest.mark.anyio
async def test_async_run_many_tasks_at_once_keeps_each_row(runtime: Runtime) -> None:
    outcomes = []

    async def one(i: int) -> None:
        outcomes.append(await runtime.run(Triage, f"Bug. Ticket number {i}.", tenant=f"t{i % 3}"))

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(one, i)
    assert len({o.task_id for o in outcomes}) == 20
    assert all(o.status is TaskStatus.SUCCEEDED for o in outcomes)
    assert sum(len(runtime.ledger.steps(o.task_id)) for o in outcomes) == 20
    assert len(runtime.ledger.tasks(limit=100, tenant="t0")) == 7


def test_the_model_that_served_is_what_is_priced_and_recorded(ledger_path: Path) -> None:
    from paymaster import ModelResponse

    def dated(request: ModelRequest) -> ModelResponse:
        return ModelResponse(text="ok", usage=Usage(input_tokens=1000, output_tokens=100), model="gpt-4o-2024-08-06")

    with Runtime(ledger=ledger_path, provider=ScriptedProvider(dated)) as rt:
        outcome = rt.run_sync(Triage, "Bug. x")
        (step,) = rt.ledger.steps(outcome.task_id)
    assert step.model == "gpt-4o-2024-08-06"
    assert outcome.cost_usd == (1000 * Decimal("2.5") + 100 * Decimal(10)) / 10**6  # gpt-4o, not gpt-4o-mini


@pytest.mark.anyio
async def test_a_read_right_after_run_sees_the_task_closed(runtime: Runtime) -> None:
    # The closing row is queued, not awaited: a read through the same ledger must still see it.
    outcome = await runtime.run(Triage, "Bug. The page is blank.")
    task = runtime.ledger.task(outcome.task_id)
    assert task is not None and task.status == "succeeded" and task.calls == 1
    assert task.cost_picos == sum(s.cost_picos or 0 for s in runtime.ledger.steps(outcome.task_id))


def test_run_sync_writes_the_closing_row_before_it_returns(ledger_path: Path) -> None:
    with Runtime(ledger=ledger_path, provider=ScriptedProvider()) as rt:
        outcome = rt.run_sync(Triage, "Bug. The page is blank.")
        other = Ledger(ledger_path)  # another connection: sees only what is committed
        try:
            task = other.task(outcome.task_id)
            assert task is not None and task.status == "succeeded"
        finally:
            other.close()
