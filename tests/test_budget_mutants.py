"""Tests that kill the mutants of the budget path that survived the rest of the suite (bench/mutation.py).

Each test states a behaviour a user relies on, through the public API (Runtime, Budget, Limit,
ScriptedProvider, Ledger, RetryPolicy); expected amounts are computed here from prices and byte
counts, never read back from the row under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import anyio
import pytest
from sqlmodel import select
from tenacity import RetryCallState

from paymaster import (
    Agent,
    Alert,
    Budget,
    Ledger,
    Limit,
    ModelRequest,
    ModelResponse,
    RetryPolicy,
    Runtime,
    ScriptedProvider,
    TaskStatus,
    Tier,
    Usage,
    tool,
)
from paymaster._money import to_picos
from paymaster.cache import CacheHit, CacheScope
from paymaster.errors import RateLimitError, ServerError
from paymaster.ledger import AccountRecord, Charge, Refusal
from paymaster.pricing import bound_prompt_tokens
from paymaster.providers import Message, ToolCall, ToolSpec

pytestmark = pytest.mark.ledgers  # every ledger_path test runs on SQLite and PostgreSQL


class Worker(Agent):
    name = "worker"


def _after(error: BaseException, attempt: int = 1) -> RetryCallState:
    """Tenacity's state after the ``attempt``-th try failed with ``error``."""
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    state.set_exception((type(error), error, None))
    return state


# -- retries -----------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["initial_wait", "max_wait", "max_retry_after"])
def test_a_negative_retry_wait_is_refused(field: str) -> None:
    with pytest.raises(ValueError, match=">= 0 seconds"):
        RetryPolicy(**{field: -1.0})  # type: ignore[arg-type]


def test_a_retry_policy_without_attempts_is_refused_and_says_so() -> None:
    with pytest.raises(ValueError, match="max_attempts must be >= 1, got 0"):
        RetryPolicy(max_attempts=0)


def test_a_zero_retry_after_retries_at_once_and_a_negative_one_counts_as_zero() -> None:
    policy = RetryPolicy(initial_wait=5, max_wait=5)
    assert policy.wait(_after(RateLimitError("429", provider="openai", retry_after=0))) == 0
    assert policy.wait(_after(RateLimitError("429", provider="openai", retry_after=-3))) == 0


def test_backoff_doubles_from_initial_wait_with_at_most_initial_wait_of_jitter_and_stops_at_max_wait() -> None:
    policy = RetryPolicy(initial_wait=0.01, max_wait=0.5)
    error = ServerError("502", provider="openai", status_code=502)
    for attempt, low in [(1, 0.01), (2, 0.02), (3, 0.04)]:
        waits = [policy.wait(_after(error, attempt)) for _ in range(30)]
        assert all(low <= w <= low + 0.01 for w in waits), (attempt, waits)
    assert policy.wait(_after(error, 30)) == 0.5


# -- kill switch and crash recovery ------------------------------------------------------------


def test_a_killed_scope_refuses_new_tasks_naming_the_account_that_was_killed(ledger_path: Path) -> None:
    provider = ScriptedProvider()
    with Runtime(ledger=ledger_path, provider=provider) as rt:
        rt.kill(tenant="acme")
        refused = rt.run_sync(Worker, "hello", tenant="acme")
    assert refused.status is TaskStatus.KILLED and provider.calls == []
    assert refused.stop_reason == "killed: the kill switch is on for tenant:acme"


HOLDER = textwrap.dedent(
    """
    import sys
    from paymaster import Agent, Runtime, ScriptedProvider

    class Slow(Agent):
        name = "slow"

    with Runtime(ledger=sys.argv[1], provider=ScriptedProvider(latency=600)) as rt:
        rt.run_sync(Slow, "a call that is still in flight", tenant="live")
    """
)


def _held(path: Path) -> tuple[str, int]:
    """The task of the holder process and what its account holds, once it holds something."""
    db = Ledger(path)
    try:
        for _ in range(600):  # the child imports paymaster and starts its call; give up after a minute
            tasks = db.tasks(limit=1)
            account = db.account(f"task:{tasks[0].id}") if tasks else None
            if account is not None and account.reserved_picos:
                return tasks[0].id, account.reserved_picos
            time.sleep(0.1)
    finally:
        db.close()
    raise AssertionError("the holder process never reserved")


def test_recovery_neither_closes_nor_disturbs_a_live_processs_call(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    Ledger(path).close()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], env=env)
    try:
        task_id, held = _held(path)
        db = Ledger(path)
        assert db.recover() == []
        with pytest.raises(subprocess.TimeoutExpired):  # recovery only asked whether it lives: it still runs
            proc.wait(timeout=1)
        account = db.account(f"task:{task_id}")
        assert account is not None and (account.reserved_picos, account.spent_picos) == (held, 0)
    finally:
        proc.kill()
        proc.wait()
    assert db.recover() == [task_id]
    account = db.account(f"task:{task_id}")
    assert account is not None and (account.reserved_picos, account.spent_picos) == (0, held)
    db.close()


# -- refusals ------------------------------------------------------------------------------------

FIXED = Usage(input_tokens=1_000, output_tokens=200)  # on claude-haiku-4-5: $0.001 + $0.001 = $0.002


@pytest.mark.parametrize(
    ("budget", "probe", "dimension", "cap", "spent", "needed"),
    [
        (Budget(tokens=5_000), Charge(tokens=4_000), "tokens", 5_000, 1_200, 4_000),
        (Budget(usd="0.02"), Charge(picos=19 * 10**9), "usd", 2 * 10**10, 2 * 10**9, 19 * 10**9),
        (Budget(steps=3), Charge(calls=3), "steps", 3, 1, 3),
        # Exactly filling the usd cap is fine; the tokens cap is what refuses.
        (Budget(usd="0.02", tokens=5_000), Charge(picos=18 * 10**9, tokens=4_000), "tokens", 5_000, 1_200, 4_000),
    ],
)
def test_a_call_that_cannot_fit_even_when_nothing_is_in_flight_is_refused_as_hard_not_transient(
    ledger_path: Path, budget: Budget, probe: Charge, dimension: str, cap: int, spent: int, needed: int
) -> None:
    with Runtime(ledger=ledger_path, provider=ScriptedProvider(usage=FIXED)) as rt:
        done = rt.run_sync(Worker, "hello", budget=budget)
        account = f"task:{done.task_id}"
        refusal = rt.ledger.reserve([account], probe, task_id=done.task_id, kind="execute")
    assert done.status is TaskStatus.SUCCEEDED
    assert refusal == Refusal(account, dimension, cap=cap, used=spent, needed=needed, spent=spent)
    assert not refusal.transient  # waiting for other calls' holds could never make it fit


# -- a reservation resolves at most once -------------------------------------------------------


def test_a_call_whose_hold_recovery_closed_meanwhile_is_charged_once_at_its_worst_case(
    ledger_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder: dict[str, Runtime] = {}
    real_time = time.time

    def reply(request: ModelRequest) -> str:
        # While this call is in flight its reservation outlives its time limit, and recovery
        # (here, or in any other process) closes it at its worst case.
        with monkeypatch.context() as m:
            m.setattr(time, "time", lambda: real_time() + 7 * 24 * 3600)
            assert holder["rt"].ledger.recover() != []
        return "a late answer"

    with Runtime(ledger=ledger_path, provider=ScriptedProvider(reply, usage=FIXED)) as rt:
        holder["rt"] = rt
        outcome = rt.run_sync(Worker, "hello", budget=Budget(usd="1"))
        steps = rt.ledger.steps(outcome.task_id)
        account = rt.ledger.account(f"task:{outcome.task_id}")
    assert account is not None and account.reserved_picos == 0
    worst = {s.reserved_picos for s in steps if s.reserved_picos}
    assert len(worst) == 1 and account.spent_picos == worst.pop()  # the worst case, not worst case + actual
    assert sum(s.cost_picos or 0 for s in steps) == account.spent_picos
    assert [s.status for s in steps].count("unsettled") == 1


@pytest.mark.parametrize(("thresholds", "fired"), [((), 0), ((0.8,), 1)])
def test_alerts_fire_only_at_the_runtimes_thresholds(
    ledger_path: Path, thresholds: tuple[float, ...], fired: int
) -> None:
    alerts: list[Alert] = []
    limit = Limit("tenant:acme", day=Budget(usd="0.011"))  # the one call spends over 90% of it

    def usage(request: ModelRequest, text: str) -> Usage:
        return Usage(input_tokens=10, output_tokens=request.max_tokens)

    with Runtime(ledger=ledger_path, provider=ScriptedProvider(usage=usage), limits=[limit],
                 alert_thresholds=thresholds, on_alert=alerts.append) as rt:
        outcome = rt.run_sync(Worker, "hello", tenant="acme")
    assert outcome.status is TaskStatus.SUCCEEDED
    assert outcome.cost_usd is not None and outcome.cost_usd > Decimal("0.0099")
    assert len([a for a in alerts if a.account.startswith("tenant:acme:day:")]) == fired


# -- the cache around a call: a hit is free -----------------------------------------------------


class DictCache:
    """An exact-match cache in a dict: what the runtime needs of a cache, without embeddings."""

    def __init__(self) -> None:
        self.entries: dict[tuple[CacheScope, str], tuple[str, Decimal]] = {}

    def lookup(self, scope: CacheScope, prompt: str) -> CacheHit | None:
        found = self.entries.get((scope, prompt))
        if found is None:
            return None
        return CacheHit(output=found[0], cost_usd=found[1], kind="exact", similarity=1.0, entry_id="e",
                        key="k", cached_prompt=prompt)

    def store(self, scope: CacheScope, prompt: str, output: str, cost_usd: Decimal) -> bool:
        self.entries[(scope, prompt)] = (output, cost_usd)
        return True

    def close(self) -> None:
        pass


def test_a_cached_answer_is_free_carries_its_saving_and_stays_within_its_tenant(ledger_path: Path) -> None:
    cache = DictCache()
    provider = ScriptedProvider(usage=FIXED)
    with Runtime(ledger=ledger_path, provider=provider, cache=cache) as rt:
        first = rt.run_sync(Worker, "What is the refund window?", tenant="acme")
        again = rt.run_sync(Worker, "What is the refund window?", tenant="acme")
        other = rt.run_sync(Worker, "What is the refund window?", tenant="globex")
        (hit,) = rt.ledger.steps(again.task_id)
        account = rt.ledger.account(f"task:{again.task_id}")
    assert len(provider.calls) == 2  # acme's first call and globex's: a hit never crosses tenants
    assert first.cost_usd == other.cost_usd == Decimal("0.002")
    assert again.cost_usd == 0 and again.cache_hits == 1 and again.cache_saved_usd == Decimal("0.002")
    assert (hit.kind, hit.status, hit.cost_picos, hit.saved_picos) == ("cache_hit", "ok", 0, 2 * 10**9)
    assert again.output == first.output
    assert account is not None and (account.spent_picos, account.reserved_picos) == (0, 0)


def test_an_answer_cut_at_max_tokens_is_not_cached(ledger_path: Path) -> None:
    cache = DictCache()
    provider = ScriptedProvider(lambda request: "word " * (request.max_tokens + 10), usage=FIXED)
    with Runtime(ledger=ledger_path, provider=provider, cache=cache) as rt:
        rt.run_sync(Worker, "Write a long answer.")
        again = rt.run_sync(Worker, "Write a long answer.")
    assert cache.entries == {} and len(provider.calls) == 2 and again.cache_hits == 0


def test_an_answer_of_unknown_price_is_not_cached(ledger_path: Path) -> None:
    cache = DictCache()
    tiers = [Tier(name="local", provider="scripted", model="a-model-nobody-prices", max_tokens=50)]
    with Runtime(ledger=ledger_path, provider=ScriptedProvider(), cache=cache, tiers=tiers) as rt:
        outcome = rt.run_sync(Worker, "hello")
    assert outcome.status is TaskStatus.SUCCEEDED and outcome.cost_usd is None
    assert cache.entries == {}


def test_a_stored_answer_is_stored_at_what_it_cost(ledger_path: Path) -> None:
    cache = DictCache()
    with Runtime(ledger=ledger_path, provider=ScriptedProvider(usage=FIXED), cache=cache) as rt:
        rt.run_sync(Worker, "hello", tenant="acme")
    ((scope, prompt), (_, cost)), = cache.entries.items()
    assert (scope.tenant, scope.agent, prompt, cost) == ("acme", "worker", "hello", Decimal("0.002"))


# -- tools -------------------------------------------------------------------------------------


@tool(price_usd="0.01")
def fraud_check(order_id: int) -> str:
    """A paid check whose backend is down."""
    raise RuntimeError(f"fraud service unavailable for order {order_id}")


class Checker(Agent):
    name = "checker"
    tools = [fraud_check]  # noqa: RUF012


def test_a_paid_tool_that_fails_is_charged_its_price_and_the_model_reads_the_error(ledger_path: Path) -> None:
    asks = ModelResponse(text="", usage=FIXED, model="m",
                         tool_calls=(ToolCall(id="c1", name="fraud_check", arguments={"order_id": 7}),))
    provider = ScriptedProvider([asks, "could not check"], usage=FIXED)
    with Runtime(ledger=ledger_path, provider=provider) as rt:
        outcome = rt.run_sync(Checker, "Is order 7 fraudulent?")
        steps = rt.ledger.steps(outcome.task_id)
        account = rt.ledger.account(f"task:{outcome.task_id}")
    (call,) = [s for s in steps if s.kind == "tool"]
    assert (call.status, call.cost_picos, call.model) == ("error", 10**10, "fraud_check")
    assert call.error is not None and "fraud service unavailable for order 7" in call.error
    assert "fraud service unavailable" in provider.calls[1].request.messages[-1].content
    assert outcome.cost_usd == Decimal("0.002") * 2 + Decimal("0.01")
    assert account is not None and account.spent_picos == to_picos(outcome.cost_usd)
    assert account.spent_tool_calls == 1 and account.reserved_picos == 0


def test_a_tool_whose_price_does_not_fit_is_refused_before_it_runs(ledger_path: Path) -> None:
    ran: list[int] = []

    @tool(price_usd="0.5")
    def expensive(order_id: int) -> str:
        """A tool that costs more than the task has left."""
        ran.append(order_id)
        return "ok"

    class Spender(Agent):
        name = "spender"
        tools = [expensive]  # noqa: RUF012

    asks = ModelResponse(text="", usage=FIXED, model="m",
                         tool_calls=(ToolCall(id="c1", name="expensive", arguments={"order_id": 1}),))
    with Runtime(ledger=ledger_path, provider=ScriptedProvider([asks], usage=FIXED)) as rt:
        outcome = rt.run_sync(Spender, "Go.", budget=Budget(usd="0.1"))
        (refused,) = [s for s in rt.ledger.steps(outcome.task_id) if s.kind == "tool"]
    assert ran == []
    assert outcome.status is TaskStatus.BUDGET_EXCEEDED and outcome.cost_usd == Decimal("0.002")
    assert (refused.status, refused.cost_picos) == ("refused", 0)
    assert outcome.stop_reason is not None and outcome.stop_reason.startswith("usd cap of account task:")


def test_when_one_account_refuses_for_good_the_refusal_names_it_even_if_another_is_only_busy(
    ledger_path: Path,
) -> None:
    limit = Limit("tenant:acme", day=Budget(usd="0.05"))
    with Runtime(ledger=ledger_path, provider=ScriptedProvider(usage=FIXED), limits=[limit]) as rt:
        done = rt.run_sync(Worker, "hello", tenant="acme", budget=Budget(usd="0.02"))  # $0.002 on both
        task = f"task:{done.task_id}"
        (day,) = [a for a in _account_ids(rt) if a.startswith("tenant:acme:day:")]
        # Another call in flight holds $0.04 of the tenant's day: the tenant is busy, not spent.
        rt.ledger.reserve([day], Charge(picos=4 * 10**10), task_id="other", kind="execute")
        refusal = rt.ledger.reserve([task, day], Charge(picos=19 * 10**9), task_id=done.task_id, kind="execute")
    # The task's own cap can never fit it ($0.002 + $0.019 > $0.02): waiting for the tenant would not help.
    assert isinstance(refusal, Refusal) and refusal.account == task and not refusal.transient


def _account_ids(rt: Runtime) -> list[str]:
    with rt.ledger.session() as s:
        return [a.id for a in s.exec(select(AccountRecord)).all()]


# -- cap policies ------------------------------------------------------------------------------


class Trimmer(Agent):
    name = "trimmer"
    on_cap = ("truncate",)


def test_truncation_leaves_room_for_what_the_refusing_account_has_already_spent(ledger_path: Path) -> None:
    limit = Limit("tenant:acme", day=Budget(tokens=30_000))
    provider = ScriptedProvider(usage=FIXED)
    long_input = "Old context. " * 4000 + "The question: what is 2+2?"  # ~52,000 bytes: far past the cap
    with Runtime(ledger=ledger_path, provider=provider, limits=[limit]) as rt:
        first = rt.run_sync(Worker, "hello", tenant="acme")  # spends 1,200 of the tenant's tokens
        outcome = rt.run_sync(Trimmer, long_input, tenant="acme")
        steps = rt.ledger.steps(outcome.task_id)
    assert first.status is TaskStatus.SUCCEEDED
    assert outcome.status is TaskStatus.SUCCEEDED
    assert [s.status for s in steps] == ["refused", "ok"]  # one cut was enough: it counted the 1,200 spent
    sent = provider.calls[1].request
    assert sent.messages[-1].content.endswith("what is 2+2?")
    assert bound_prompt_tokens(sent) + sent.max_tokens <= 30_000 - 1_200


# -- waiting for room ------------------------------------------------------------------------------


def test_a_call_waiting_for_a_hold_looks_again_on_a_slow_tick_not_in_a_busy_loop(
    ledger_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = Limit("tenant:acme", day=Budget(usd="0.015"))  # one call's hold (~$0.0104) at a time
    provider = ScriptedProvider(usage=FIXED, latency=1.0)
    with Runtime(ledger=ledger_path, provider=provider, limits=[limit]) as rt:
        # A model's first call under a dollar cap goes alone (to learn which model serves it): make it now.
        rt.run_sync(Worker, "warm-up", tenant="globex", budget=Budget(usd="1"))
        looks: list[int] = []
        recover = rt.ledger.arecover

        async def counted() -> list[str]:
            looks.append(1)
            return await recover()

        monkeypatch.setattr(rt.ledger, "arecover", counted)

        async def both() -> list[TaskStatus]:
            statuses: list[TaskStatus] = []

            async def one(i: int) -> None:
                statuses.append((await rt.run(Worker, f"job {i}", tenant="acme")).status)

            async with anyio.create_task_group() as tg:
                tg.start_soon(one, 1)
                tg.start_soon(one, 2)
            return statuses

        statuses = anyio.run(both)
    assert statuses == [TaskStatus.SUCCEEDED] * 2  # the second call waited for the first one's hold
    # While the first call takes a second, the waiting one looks again a few times, not thousands.
    assert 1 <= len(looks) <= 15, len(looks)


@tool
def lookup(order_id: int) -> str:
    """A free lookup."""
    return f"order {order_id}: delivered"


class Looker(Agent):
    name = "looker"
    tools = [lookup]  # noqa: RUF012


def _look_then_answer(request: ModelRequest) -> ModelResponse:
    if request.messages[-1].role == "tool":
        return ModelResponse(text="done", usage=FIXED, model=request.model)
    return ModelResponse(text="", usage=FIXED, model=request.model,
                         tool_calls=(ToolCall(id="c1", name="lookup", arguments={"order_id": 1}),))


def test_waiting_calls_are_served_oldest_task_first_so_a_task_finishes(ledger_path: Path) -> None:
    # Each task makes two calls of $0.002; each call holds ~$0.0113 while in flight. The tenant's
    # $0.016 fits one hold at a time and three calls in all: served oldest task first, the oldest
    # task makes both its calls; served in order of arrival, every task would stop part-way.
    limit = Limit("tenant:acme", day=Budget(usd="0.016"))
    provider = ScriptedProvider(_look_then_answer, latency=0.2)
    with Runtime(ledger=ledger_path, provider=provider, limits=[limit]) as rt:
        rt.run_sync(Looker, "warm-up", tenant="globex", budget=Budget(usd="1"))  # a model's first call goes alone
        order: list[str] = []

        async def tasks() -> dict[str, TaskStatus]:
            statuses: dict[str, TaskStatus] = {}

            async def one(name: str) -> None:
                order.append(name)
                statuses[name] = (await rt.run(Looker, f"Where is order 1? ({name})", tenant="acme")).status

            async with anyio.create_task_group() as tg:
                for name in ("first", "second", "third", "fourth"):
                    tg.start_soon(one, name)
                    await anyio.sleep(0.01)  # tasks start one after another
            return statuses

        statuses = anyio.run(tasks)
    assert order == ["first", "second", "third", "fourth"]
    assert statuses["first"] is TaskStatus.SUCCEEDED
    assert [statuses[n] for n in order[1:]] == [TaskStatus.BUDGET_EXCEEDED] * 3


# -- the input bound counts every byte sent ---------------------------------------------------------

BIG = {"type": "object", "properties": {f"field_{i}": {"type": "string", "description": "x" * 40} for i in range(30)}}


def _request(**extra: object) -> ModelRequest:
    messages = extra.pop("messages", (Message(role="user", content="Check order 7."),))
    return ModelRequest(model="gpt-4o-mini", max_tokens=100, messages=messages, **extra)


@pytest.mark.parametrize(
    ("extra", "sent"),
    [
        ({"tools": (ToolSpec(name="check", description="d" * 500, parameters=BIG),)},
         len("check") + 500 + len(json.dumps(BIG))),
        ({"json_schema": BIG}, len(json.dumps(BIG))),
        ({"messages": (Message(role="user", content="Check order 7."),
                       Message(role="assistant", tool_calls=(ToolCall(id="c1", name="check", arguments=BIG),)),
                       Message(role="tool", content="ok", tool_call_id="c1"))},
         len(json.dumps(BIG)) + len("check") + len("ok")),
    ],
    ids=["tool schemas", "output schema", "tool calls in the history"],
)
def test_the_input_bound_counts_every_byte_sent_with_the_prompt(extra: dict[str, object], sent: int) -> None:
    plain, more = _request(), _request(**extra)
    # Tool schemas, an output schema and earlier tool calls go to the provider and are billed as input.
    assert bound_prompt_tokens(more) - bound_prompt_tokens(plain) >= sent
