"""The Runtime: the one entry point that runs an agent on a task."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio

from .._money import from_picos
from ..errors import ConfigurationError, PaymasterError, PriceUnknownError
from ..executors import BudgetGuard, BudgetStop, CallContext, Executor, RunCharges, aggregate
from ..ledger import Ledger, TaskRecord, new_task_id
from ..planners import Complexity, Plan, PlanContext, Planner, SingleStepPlanner
from ..pricing import PriceBook, parse_price_overrides
from ..providers._types import Provider
from ..router import RouteDecision, Router, Tier, TierTable, load_config, tier_table_from_config
from ._agent import Agent
from ._budget import Budget
from ._task import Outcome, Task, TaskStatus

_PROVIDER_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


class Runtime:
    """Runs agents: plan, route, execute under budgets, aggregate, and record it all in the ledger.

    ``ledger`` is a database URL or a SQLite path (default ``./paymaster.db``,
    or the PAYMASTER_LEDGER environment variable). ``provider`` serves every
    tier; ``providers`` maps a tier's provider name to the provider serving it.
    ``config`` is a TOML file with ``[tiers.NAME]``, ``[routes]`` and
    ``[prices."provider/model"]`` tables; ``tiers``, ``routes`` and ``prices``
    given in code take precedence over it.
    """

    def __init__(
        self,
        *,
        ledger: str | Path | Ledger | None = None,
        provider: Provider | None = None,
        providers: Mapping[str, Provider] | None = None,
        tiers: Iterable[Tier] | TierTable | None = None,
        routes: Mapping[Complexity | str, str] | None = None,
        prices: str | Path | PriceBook | None = None,
        config: str | Path | None = None,
        planner: Planner | None = None,
    ) -> None:
        data: Mapping[str, Any] = load_config(config) if config is not None else {}
        where = str(config) if config is not None else "config"
        if isinstance(tiers, TierTable):
            self.tiers = tiers
        elif tiers is not None:
            self.tiers = TierTable(tiers, routes=routes or data.get("routes"))
        else:
            self.tiers = tier_table_from_config({**data, **({"routes": routes} if routes else {})}, where)
        if isinstance(prices, PriceBook):
            self.prices = prices
        else:
            self.prices = PriceBook.from_file(prices) if prices is not None else PriceBook()
            for model_prices in parse_price_overrides(data.get("prices", {}), f"{where}: prices").values():
                self.prices.set(model_prices)
        self.ledger = ledger if isinstance(ledger, Ledger) else Ledger(ledger)
        self._owns_ledger = not isinstance(ledger, Ledger)
        self._provider = provider
        self._providers = dict(providers or {})
        self.router = Router(self.tiers)
        self.planner: Planner = planner or SingleStepPlanner()
        self._guard = BudgetGuard(self.ledger, self.prices, self.provider_for)
        self._executor = Executor(self._guard)

    # -- configuration checks ------------------------------------------------

    def provider_for(self, tier: Tier) -> Provider:
        """The provider that serves ``tier``; a missing one is a clear error."""
        if self._provider is not None:
            return self._provider
        found = self._providers.get(tier.provider)
        if found is not None:
            return found
        env = _PROVIDER_ENV.get(tier.provider)
        hint = f" (and set {env})" if env else ""
        raise ConfigurationError(
            f"tier {tier.name!r} needs provider {tier.provider!r}, which is not configured: pass "
            f"Runtime(providers={{{tier.provider!r}: ...}}){hint}, or Runtime(provider=ScriptedProvider()) "
            "to run offline"
        )

    def _check(self, agent: type[Agent], budget: Budget) -> None:
        for tier_name in {**self.tiers.routes, **agent.routes}.values():
            tier = self.tiers.get(tier_name)
            self.provider_for(tier)
            if budget.usd is not None and self.prices.get(tier.provider, tier.model) is None:
                raise PriceUnknownError(
                    f"agent {agent.name!r} has a USD cap, but the price of {tier.provider}/{tier.model} "
                    f"(tier {tier.name!r}) is unknown, so the cap cannot be enforced: add "
                    f"[prices.\"{tier.provider}/{tier.model}\"] with input_mtok and output_mtok to your "
                    "config or price file"
                )

    # -- running -------------------------------------------------------------

    async def run(
        self,
        agent: type[Agent],
        input: str,
        *,
        tenant: str = "default",
        tags: Mapping[str, str] | None = None,
        budget: Budget | None = None,
    ) -> Outcome:
        """Run ``agent`` on ``input`` and return its Outcome; never spends past a cap."""
        task = self._new_task(agent, input, tenant, tags, budget)
        instance = agent()
        self.ledger.open_task(
            TaskRecord(
                id=task.id, agent=task.agent, agent_version=task.agent_version, tenant=task.tenant,
                tags=task.tags, budget=task.budget.model_dump(mode="json", exclude_none=True),
                input_preview=task.input[:500], created_at=time.time(),
            )
        )
        account = f"task:{task.id}"
        self.ledger.ensure_account(account, task.budget.caps())
        baseline = self.prices.get(self.tiers.deepest.provider, self.tiers.deepest.model)
        ctx = CallContext(task_id=task.id, accounts=(account,), charges=RunCharges(), baseline=baseline)
        outputs: dict[str, str] = {}
        plan: Plan | None = None
        status, stop_reason = TaskStatus.SUCCEEDED, None
        try:
            planner_tier = self.tiers.deepest
            plan_ctx = PlanContext(
                default_complexity=agent.complexity,
                max_subtasks=8,
                call=partial(self._guard.call, ctx, planner_tier, kind="plan"),
                model=planner_tier.model,
            )
            plan = await self.planner.plan(task.input, plan_ctx)
            decisions = self._route(plan, agent)
            self.ledger.update_task(task.id, plan=_plan_record(plan, decisions))
            await self._executor.run(ctx, plan, decisions, instance.instructions, outputs)
        except BudgetStop as stop:
            status, stop_reason = TaskStatus.BUDGET_EXCEEDED, stop.reason
        except PaymasterError as exc:
            status, stop_reason = TaskStatus.FAILED, f"{type(exc).__name__}: {exc}"
        except BaseException as exc:
            # A bug in agent code or a cancellation: close the task as failed so
            # the ledger keeps what was spent, then let the exception through.
            self.ledger.finish_task(
                task.id, status=TaskStatus.FAILED.value, stop_reason=f"{type(exc).__name__}: {exc}",
                output=aggregate(plan, outputs) if plan is not None else "", success=False,
            )
            raise
        output = aggregate(plan, outputs) if plan is not None else ""
        success = instance.evaluate(output) if status is TaskStatus.SUCCEEDED else False
        record = self.ledger.finish_task(
            task.id, status=status.value, stop_reason=stop_reason, output=output, success=success
        )
        return Outcome(
            task_id=task.id, agent=task.agent, tenant=task.tenant, status=status, output=output,
            success=success, stop_reason=stop_reason,
            cost_usd=None if record.unpriced_calls else from_picos(record.cost_picos),
            baseline_usd=None if baseline is None or record.unpriced_calls else from_picos(record.baseline_picos),
            usage=ctx.charges.usage, calls=record.calls,
        )

    def run_sync(
        self,
        agent: type[Agent],
        input: str,
        *,
        tenant: str = "default",
        tags: Mapping[str, str] | None = None,
        budget: Budget | None = None,
    ) -> Outcome:
        """``run`` for code that is not async (starts and ends its own event loop)."""
        return anyio.run(partial(self.run, agent, input, tenant=tenant, tags=tags, budget=budget))

    def _new_task(
        self,
        agent: type[Agent],
        input: str,
        tenant: str,
        tags: Mapping[str, str] | None,
        budget: Budget | None,
    ) -> Task:
        if not (isinstance(agent, type) and issubclass(agent, Agent)) or agent is Agent:
            raise ConfigurationError(
                f"run() takes an Agent subclass (the class itself, not an instance); got {agent!r}"
            )
        if not isinstance(input, str) or not input.strip():
            raise ConfigurationError("run() needs the task input as a non-empty string")
        if not isinstance(tenant, str) or not tenant:
            raise ConfigurationError(f"tenant must be a non-empty string, got {tenant!r}")
        clean_tags = dict(tags or {})
        bad = {k: v for k, v in clean_tags.items() if not (isinstance(k, str) and isinstance(v, str))}
        if bad:
            raise ConfigurationError(f"tags must map strings to strings, e.g. {{'team': 'support'}}; got {bad}")
        if budget is not None and not isinstance(budget, Budget):
            raise ConfigurationError(f"budget must be a paymaster.Budget, got {type(budget).__name__}")
        merged = agent.budget.merged(budget)
        self._check(agent, merged)
        return Task(
            id=new_task_id(), agent=agent.name, agent_version=agent.version, input=input,
            tenant=tenant, tags=clean_tags, budget=merged,
        )

    def _route(self, plan: Plan, agent: type[Agent]) -> dict[str, RouteDecision]:
        return {s.id: self.router.route(s, agent.routes) for s in plan.subtasks}

    # -- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        """Close the ledger if this runtime opened it."""
        if self._owns_ledger:
            self.ledger.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _plan_record(plan: Plan, decisions: Mapping[str, RouteDecision]) -> dict[str, Any]:
    return {
        "subtasks": [
            {
                **s.model_dump(mode="json"),
                "tier": decisions[s.id].tier.name,
                "reason": decisions[s.id].reason,
            }
            for s in plan.subtasks
        ]
    }

