"""Property: whatever the workload, no account's recorded spend passes its cap, and every account's
spend is exactly the sum of the settled costs of the calls charged to it."""

from __future__ import annotations

import random
from collections import defaultdict
from decimal import Decimal
from functools import partial
from pathlib import Path

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inflight import Inflight
from sqlmodel import select

from paymaster import Agent, Budget, Limit, ModelRequest, RetryPolicy, Runtime, ScriptedProvider, Usage
from paymaster.errors import BadRequestError, OverloadedError, ProviderTimeoutError, RateLimitError
from paymaster.ledger import AccountRecord, Ledger, StepRecord, TaskRecord
from paymaster.pricing import bound_prompt_tokens


class Small(Agent):
    name = "small"


class Big(Agent):
    name = "big"
    complexity = "complex"  # type: ignore[assignment]


workloads = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "tasks": st.integers(1, 30),
        "tenant_cap": st.decimals(min_value=Decimal("0.005"), max_value=Decimal("0.3"), places=4),
        "tag_cap": st.decimals(min_value=Decimal("0.005"), max_value=Decimal("0.3"), places=4),
        "task_cap": st.one_of(st.none(), st.decimals(min_value=Decimal("0.001"), max_value=Decimal("0.1"), places=4)),
        "failure_rate": st.floats(0, 0.6),
        "retries": st.one_of(st.none(), st.integers(0, 3)),
    }
)


def _provider(rng: random.Random, failure_rate: float) -> ScriptedProvider:
    def reply(request: ModelRequest) -> str:
        if rng.random() < failure_rate:
            raise rng.choice([
                OverloadedError("overloaded", provider="scripted", status_code=529),
                RateLimitError("slow down", provider="scripted", retry_after=0),
                ProviderTimeoutError("timed out", provider="scripted"),
                BadRequestError("bad", provider="scripted", status_code=400),
            ])
        return "ok " * rng.randint(1, 50)

    def usage(request: ModelRequest, text: str) -> Usage:
        # A real provider never reports more than the prompt's byte bound or max_tokens.
        bound = bound_prompt_tokens(request)
        read = rng.randint(0, bound // 2)
        return Usage(input_tokens=rng.randint(read + 1, bound), output_tokens=rng.randint(1, request.max_tokens),
                     cache_read_tokens=read)

    # Real latency, so that many calls are in flight at once and their holds overlap.
    return ScriptedProvider(reply, usage=usage, latency=rng.uniform(0.002, 0.015))


def _check_accounts(ledger: Ledger) -> None:
    with ledger.session() as s:
        accounts = s.exec(select(AccountRecord)).all()
        tasks = {t.id: t for t in s.exec(select(TaskRecord)).all()}
        steps = s.exec(select(StepRecord)).all()
    charged: dict[str, int] = defaultdict(int)
    for step in steps:
        if step.status == "refused" or not step.cost_picos:
            continue
        task = tasks[step.task_id]
        names = [f"task:{task.id}", f"agent:{task.agent}", f"tenant:{task.tenant}"]
        names += [f"tag:{k}={v}" for k, v in task.tags.items()]
        if step.kind == "retry":
            names.append(f"task:{task.id}:retries")
        for account in accounts:
            base = account.id.split(":day:")[0].split(":month:")[0]
            if account.id in names or base in names[1:]:
                charged[account.id] += step.cost_picos
    assert accounts
    for account in accounts:
        assert account.reserved_picos == 0 and account.reserved_calls == 0, account
        if account.cap_picos is not None:
            assert account.spent_picos <= account.cap_picos, account
        if account.cap_calls is not None:
            assert account.spent_calls <= account.cap_calls, account
        assert account.spent_picos == charged[account.id], account.id


@given(workload=workloads)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_concurrent_random_workloads_never_pass_a_cap(tmp_path_factory: object, workload: dict[str, object]) -> None:
    path = Path(tmp_path_factory.mktemp("prop")) / "ledger.db"  # type: ignore[attr-defined]
    rng = random.Random(workload["seed"])  # type: ignore[arg-type]
    limits = [
        Limit("tenant:acme", day=Budget(usd=workload["tenant_cap"])),  # type: ignore[arg-type]
        Limit("tag:team=support", month=Budget(usd=workload["tag_cap"])),  # type: ignore[arg-type]
    ]
    provider = Inflight(_provider(rng, workload["failure_rate"]))  # type: ignore[arg-type]
    budget = Budget(usd=workload["task_cap"], retries=workload["retries"])  # type: ignore[arg-type]
    with Runtime(ledger=path, provider=provider, limits=limits, tag_keys=["team"], budget_wait=3,
                 retry=RetryPolicy(initial_wait=0, max_wait=0)) as rt:

        async def workload_run() -> None:
            async def one(i: int) -> None:
                agent = Big if i % 3 == 0 else Small
                tags = {"team": "support" if i % 2 else "sales"}
                await rt.run(agent, f"Task {i}: " + "words " * rng.randint(1, 300), tenant="acme", tags=tags,
                             budget=budget)

            async with anyio.create_task_group() as tg:
                for i in range(workload["tasks"]):  # type: ignore[call-overload]
                    tg.start_soon(one, i)

        anyio.run(workload_run)
        _check_accounts(rt.ledger)
    # Where the caps leave room for several holds at once (a moderate call holds up to ~$0.013), they overlapped.
    roomy = min(workload["tenant_cap"], workload["tag_cap"]) >= Decimal("0.1")  # type: ignore[type-var]
    roomy = roomy and (workload["task_cap"] is None or workload["task_cap"] >= Decimal("0.02"))  # type: ignore[operator]
    if workload["tasks"] >= 10 and roomy:  # type: ignore[operator]
        assert provider.peak >= 2, provider.peak  # (a model's first capped call goes alone)


def test_many_overlapping_holds_on_a_binding_cap_stay_within_it(tmp_path: Path) -> None:
    rng = random.Random(7)
    cap = Decimal("0.15")  # about 14 holds of a moderate call at once; about half the work's cost
    provider = Inflight(_provider(rng, 0.2))
    limits = [Limit("tenant:acme", day=Budget(usd=str(cap)))]
    with Runtime(ledger=tmp_path / "l.db", provider=provider, limits=limits, budget_wait=5,
                 retry=RetryPolicy(initial_wait=0, max_wait=0)) as rt:

        async def run_all() -> None:
            async with anyio.create_task_group() as tg:
                for i in range(80):
                    tg.start_soon(partial(rt.run, Big if i % 3 == 0 else Small, f"Task {i}: " + "w " * 200,
                                          tenant="acme"))

        anyio.run(run_all)
        _check_accounts(rt.ledger)
        statuses = [t.status for t in rt.ledger.tasks(limit=100)]
        day = next(a for a in _accounts(rt.ledger) if a.id.startswith("tenant:acme:day:"))
    assert provider.peak >= 3, provider.peak
    assert "budget_exceeded" in statuses  # the cap did bind
    assert day.cap_picos is not None and day.spent_picos <= day.cap_picos


def _accounts(ledger: Ledger) -> list[AccountRecord]:
    with ledger.session() as s:
        return list(s.exec(select(AccountRecord)).all())
