"""The Runtime: the one entry point that runs an agent on a task."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from types import TracebackType

import anyio

from .._money import from_picos
from ..errors import ConfigurationError, PaymasterError
from ..executors import (
    Approver,
    BudgetGuard,
    BudgetStop,
    Cache,
    CallContext,
    CapPolicy,
    ExecSettings,
    Executor,
    Halt,
    ModelRejected,
    Observer,
    RateGate,
    RetryPolicy,
    RunCharges,
    TaskView,
    Tool,
    aggregate,
    combine,
)
from ..executors._turns import TASK_START
from ..ledger import Alert, Ledger, new_task_id
from ..planners import Complexity, Plan, PlanContext, PlanInvalid, Planner, SingleStepPlanner
from ..pricing import PriceBook, count_tokens
from ..providers._types import Provider
from ..router import Router, Tier, TierTable
from ._admission import admit, enforce_admission, plan_record
from ._agent import Agent, planner_for
from ._budget import Budget
from ._checks import Providers, check_agent, check_router, check_run_args, check_served
from ._config import Settings, open_cache, open_ledger
from ._kills import KillWatch
from ._limits import Limit, kill_scopes
from ._raised import RaisedCaps
from ._running import CURRENT as _CURRENT
from ._running import Running as _Running
from ._running import budget_record, open_task, retry_account
from ._shadow import Shadow, Shadower
from ._task import Outcome, Task, TaskStatus


class Runtime:
    """Runs agents: plan, route, execute under budgets, aggregate, and record it all in the ledger.

    ``ledger`` is a database URL or a SQLite path (default ``./paymaster.db``,
    or the PAYMASTER_LEDGER environment variable). ``provider`` serves every
    tier; ``providers`` maps a tier's provider name to the provider serving it.
    ``config`` is a TOML file with ``[tiers.NAME]``, ``[routes]``, ``[limits]``,
    ``[router] thresholds = "file.json"`` and ``[prices."provider/model"]``
    tables; arguments given in code take precedence over it. ``router`` is a
    Router, or a thresholds file written by ``paymaster calibrate`` (score
    mode). ``limits`` are day/month budgets per agent, tenant or tag, shared by
    every process using the same ledger. A call that does not fit only because
    calls in flight hold their worst case waits up to ``budget_wait`` seconds
    for them to settle before the agent's cap policy applies. ``leases=True``
    holds calls on leases of the shared accounts (see ``Ledger``), for fleets
    of workers on one busy budget; ``heartbeat_seconds``, how long this worker
    may be silent before others take it for dead. ``shadow`` re-runs a sample of subtasks on
    a reference tier in the background, on a budget of its own, to keep
    measuring the router's quality (see ``Shadow``). A call over a rate
    (``Agent.rate``, ``Limit(rate=...)``, ``@tool(rate=...)``) waits its turn
    up to ``rate_wait`` seconds, then the task ends as ``rate_limited``.
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
        router: Router | str | Path | None = None,
        cache: Cache | str | Path | bool | None = None,
        limits: Iterable[Limit] | None = None,
        tag_keys: Iterable[str] | None = None,
        approver: Approver | None = None,
        on_alert: Callable[[Alert], None] | None = None,
        alert_thresholds: Iterable[float] = (0.8,),
        retry: RetryPolicy | None = None,
        budget_wait: float = 30.0,
        observers: Iterable[Observer] = (),
        leases: bool = False,
        heartbeat_seconds: float | None = None,
        shadow: Shadow | None = None,
        rate_wait: float = 60.0,
        agents: Iterable[type[Agent]] | None = None,
    ) -> None:
        settings = Settings.resolve(
            config=config, tiers=tiers, routes=routes, prices=prices, limits=limits, tag_keys=tag_keys
        )
        self.tiers, self.prices, self.limits = settings.tiers, settings.prices, settings.limits
        self.policies = settings.policies
        if agents is not None:
            self.policies.check_agents(agents, str(config or "Runtime(agents=...)"))
        thresholds = tuple(alert_thresholds)
        if any(not 0 < t <= 1 for t in thresholds):
            raise ConfigurationError(f"alert_thresholds are fractions of a cap in (0, 1], got {thresholds}")
        self.ledger = open_ledger(ledger, leases, heartbeat_seconds)
        self._owns_ledger = not isinstance(ledger, Ledger)
        self.ledger.accounts.alert_thresholds = tuple(sorted(thresholds))
        if on_alert is not None:
            self.ledger.accounts.listeners.append(on_alert)
        self.recovered = self.ledger.recover()  # close what a crashed process left open
        # The tokenizer (admission's estimates) loads in about 0.2 s: here, once per process, not
        # inside the first task, where it would stall every other task on the event loop.
        count_tokens("")
        self._providers = Providers(provider, providers)
        self.router = settings.router(router)
        check_router(self.router, self.tiers, self._providers)  # a missing provider fails now, not at a first call
        self.cache, self._owns_cache = open_cache(cache, self.ledger)
        self.planner: Planner = planner or SingleStepPlanner()
        self.approver = approver
        self.rates = RateGate(self.ledger, rate_wait)
        for key, rate in self.limits.rates().items():
            self.rates.add(key, rate)
        self._rated: set[type[Agent]] = set()
        self.raised = RaisedCaps(self.ledger)
        self._guard = BudgetGuard(self.ledger, self.prices, self.tiers, self.provider_for, retry, budget_wait,
                                  rates=self.rates)
        self._executor = Executor(self._guard)
        self._running: dict[str, _Running] = {}
        self.observers: list[Observer] = list(observers)
        self._kills = KillWatch(self.ledger, self._running)  # kills thrown by other workers stop tasks here
        self.ledger.on_tick.append(self._kills.check)
        self._shadow = None if shadow is None else Shadower(shadow, self.ledger, self.prices, self.tiers,
                                                             self.provider_for)
        if self._shadow is not None:
            check_served(self.tiers, self._shadow.tiers, self._providers, "Runtime(shadow=...)")

    def provider_for(self, tier: Tier) -> Provider:
        """The provider that serves ``tier``; a missing one is a clear error."""
        return self._providers.for_tier(tier)

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
        """Run ``agent`` on ``input`` and return its Outcome; never spends past a cap.

        Called from inside another task (a tool that delegates to a sub-agent),
        the new task nests: it must also fit its parent's task budget, and
        ``Budget.depth`` bounds how deep such nesting goes.
        """
        # A thousand tasks starting at once start a few per loop pass; a start weighs as much as TASK_START calls.
        await self._guard.turns.take(weight=TASK_START)
        agent = self.policies.apply(agent)  # the config's [agents.NAME] and [tools.NAME] settings
        agent = await self.raised.apply(agent)  # a temporary cap raise after a surge, while one is in force
        task = self._new_task(agent, input, tenant, tags, budget)
        parent = _CURRENT.get()
        running = open_task(self.ledger, self.limits, self.policies.version, task, parent, agent.human_cost_usd)
        view = TaskView(
            task_id=task.id, agent=task.agent, agent_version=task.agent_version, tenant=task.tenant,
            tags=dict(task.tags), budget=dict(budget_record(task.budget)),
            parent_id=None if parent is None else parent.task.id, started_at=time.time(),
        )
        for observer in self.observers:
            observer.task_started(view)
        instance = agent()
        baseline = self.prices.get(self.tiers.deepest.provider, self.tiers.deepest.model)
        ctx = CallContext(
            task_id=task.id, agent=task.agent, tenant=task.tenant, accounts=running.accounts,
            retry_account=retry_account(task), charges=RunCharges(), baseline=baseline,
            policies=tuple(CapPolicy(p) for p in agent.on_cap), approver=self.approver,
            cache=self.cache if agent.cacheable else None, agent_version=agent.version,
            auto_max_tokens=agent.max_tokens == "auto", usd_capped=running.usd_capped,
            observers=tuple(self.observers), view=view, role=agent.role, budget_usd=task.budget.usd,
            on_pause=lambda paused: self.ledger.update_task_later(
                task.id, status="awaiting_approval" if paused else "running"
            ),
        )
        outputs: dict[str, str] = {}
        plan: Plan | None = None
        final: str | None = None
        status, stop_reason = TaskStatus.SUCCEEDED, None
        token = _CURRENT.set(running)
        self._running[task.id] = running
        self._kills.attach()
        try:
            if task.budget.wall_seconds:  # one scope serves the kill switch and the wall-time cap
                running.scope.deadline = anyio.current_time() + task.budget.wall_seconds
            with running.scope:
                if running.max_depth is not None and running.depth > running.max_depth:
                    raise BudgetStop(f"depth cap reached: sub-agents may nest {running.max_depth} deep")
                plan = await self._plan(task, agent, instance, ctx)
                decisions = {s.id: self.router.route(s, agent.routes) for s in plan.subtasks}
                estimate = await admit(self.ledger, self.prices, running.accounts, plan, decisions,
                                       instance.instructions)
                self.ledger.update_task_later(task.id, plan=plan_record(plan, decisions, estimate.as_record()))
                policies = {CapPolicy(p) for p in agent.on_cap}
                await enforce_admission(self.ledger, self._guard, ctx, plan, estimate, policies)
                tools = [t for t in agent.tools if isinstance(t, Tool)]
                settings = ExecSettings(summarise_over=agent.summarise_over, cheap_tier=self.tiers.tiers[0])
                await self._executor.run(ctx, plan, decisions, instance.instructions, outputs, tools, settings)
                if self._shadow is not None:  # in the background, on the eval budget
                    self._shadow.submit(task, agent, instance, plan, decisions, outputs)
                final = instance.aggregate(task.input, outputs)
                if final is None:
                    final = await combine(self._guard, ctx, self.tiers.tiers[0], instance.instructions, task.input,
                                          plan, outputs)
            if running.killed is not None:
                status, stop_reason = TaskStatus.KILLED, running.killed
            elif running.scope.cancelled_caught:
                status = TaskStatus.BUDGET_EXCEEDED
                stop_reason = f"wall_seconds cap reached: the task ran for {task.budget.wall_seconds}s"
        except BudgetStop as stop:
            status = (TaskStatus.KILLED if stop.killed else TaskStatus.RATE_LIMITED if stop.rate_limited
                      else TaskStatus.BUDGET_EXCEEDED)
            stop_reason = stop.reason
        except Halt as halt:
            status, stop_reason = TaskStatus.HALTED, halt.reason
        except ModelRejected as rejected:
            status, stop_reason = TaskStatus.MODEL_REJECTED, rejected.reason
        except PlanInvalid as invalid:
            status, stop_reason = TaskStatus.PLAN_INVALID, invalid.reason
            self.ledger.update_task_later(task.id, plan={"invalid": invalid.reason, "raw": invalid.raw})
        except PaymasterError as exc:
            status, stop_reason = TaskStatus.FAILED, f"{type(exc).__name__}: {exc}"
        except BaseException as exc:
            # A bug in agent code or a cancellation from outside: close the task as
            # failed so the ledger keeps what was spent, then let the exception through.
            with anyio.CancelScope(shield=True):
                await self.ledger.afinish_task(
                    task.id, ctx.charges.totals, status=TaskStatus.FAILED.value,
                    stop_reason=f"{type(exc).__name__}: {exc}",
                    output=aggregate(plan, outputs) if plan is not None else "", success=False,
                )
            for observer in self.observers:
                observer.task_finished(view, TaskStatus.FAILED.value, f"{type(exc).__name__}: {exc}",
                                       ctx.charges.totals)
            raise
        finally:
            self._running.pop(task.id, None)
            _CURRENT.reset(token)
        if status is TaskStatus.SUCCEEDED and final is not None:
            output = final
        else:  # a stop part-way: whatever the finished subtasks produced
            output = aggregate(plan, outputs) if plan is not None else ""
        success = instance.evaluate(output) if status is TaskStatus.SUCCEEDED else False
        totals = ctx.charges.totals
        await self.ledger.afinish_task(
            task.id, totals, status=status.value, stop_reason=stop_reason, output=output, success=success
        )
        for observer in self.observers:
            observer.task_finished(view, status.value, stop_reason, totals)
        return Outcome(
            task_id=task.id, agent=task.agent, tenant=task.tenant, status=status, output=output,
            success=success, stop_reason=stop_reason,
            cost_usd=None if totals.unpriced_calls else from_picos(totals.cost_picos),
            baseline_usd=None if baseline is None or totals.unpriced_calls else from_picos(totals.baseline_picos),
            usage=ctx.charges.usage, calls=totals.calls, cache_hits=totals.cache_hits,
            cache_saved_usd=from_picos(totals.saved_picos),
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

        async def run_and_close() -> Outcome:
            try:
                return await self.run(agent, input, tenant=tenant, tags=tags, budget=budget)
            finally:
                await self.shadows_done()  # the event loop ends here: let shadow runs finish first
                await self.aclose_providers()
                await self.ledger.aflush()  # the task's closing row, before the loop ends

        return anyio.run(run_and_close)

    async def shadows_done(self) -> None:
        """Wait for the shadow evaluation runs started so far to finish and be recorded."""
        if self._shadow is not None:
            await self._shadow.drain()
            await self.ledger.aflush()

    async def aclose_providers(self) -> None:
        """Close the providers' connections opened on the running event loop."""
        for provider in self._providers.opened():
            aclose = getattr(provider, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _plan(self, task: Task, agent: type[Agent], instance: Agent, ctx: CallContext) -> Plan:
        """The agent's own plan if it has one, else its planner's (on the planner tier, budgeted)."""
        fixed = instance.make_plan(task.input)
        if fixed is not None:
            return fixed
        tier = self.tiers.get(agent.planner_tier) if agent.planner_tier else self.tiers.deepest
        plan_ctx = PlanContext(
            default_complexity=agent.complexity,
            max_subtasks=agent.max_subtasks,
            call=partial(self._guard.call, ctx, tier, kind="plan"),
            model=tier.model,
        )
        return await planner_for(agent, self.planner).plan(task.input, plan_ctx)

    def _new_task(
        self,
        agent: type[Agent],
        input: str,
        tenant: str,
        tags: Mapping[str, str] | None,
        budget: Budget | None,
    ) -> Task:
        clean_tags = check_run_args(agent, input, tenant, tags)
        self.limits.check_tags(clean_tags)
        if budget is not None and not isinstance(budget, Budget):
            raise ConfigurationError(f"budget must be a paymaster.Budget, got {type(budget).__name__}")
        merged = agent.budget.merged(budget)
        check_agent(agent, merged, tiers=self.tiers, router=self.router, providers=self._providers,
                    prices=self.prices, approve=self.approver is not None)
        if agent not in self._rated:  # the rates an agent class and its tools declare, once per class
            self._rated.add(agent)
            self.rates.declare(agent.name, agent.rate, agent.tools)
        return Task(
            id=new_task_id(), agent=agent.name, agent_version=agent.version, input=input,
            tenant=tenant, tags=clean_tags, budget=merged,
        )

    # -- the kill switch ---------------------------------------------------------

    def kill(
        self, *, agent: str | None = None, tenant: str | None = None, tags: Mapping[str, str] | None = None
    ) -> int:
        """Stop every running task of an agent, tenant or tag now; returns how many ran in this process.

        Tasks here are cancelled at once (an in-flight call is charged at its
        worst case); tasks of other workers sharing the ledger are refused at
        their next call, and their calls in flight are cancelled within about a
        second by those workers' own watch. New tasks in scope are refused
        until ``revive``.
        """
        scopes = kill_scopes(agent, tenant, tags)
        self.ledger.accounts.set_killed(scopes, True)
        stopped = 0
        for running in list(self._running.values()):
            if any(s in running.accounts for s in scopes):
                running.killed = f"killed: the kill switch was thrown for {', '.join(scopes)}"
                running.scope.cancel()
                stopped += 1
        return stopped

    def revive(
        self, *, agent: str | None = None, tenant: str | None = None, tags: Mapping[str, str] | None = None
    ) -> None:
        """Turn the kill switch off again for an agent, tenant or tag."""
        self.ledger.accounts.set_killed(kill_scopes(agent, tenant, tags), False)

    # -- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        """Close the ledger and the cache if this runtime opened them."""
        if self._kills.check in self.ledger.on_tick:
            self.ledger.on_tick.remove(self._kills.check)
        if self._owns_ledger:
            self.ledger.close()
        else:
            self.ledger.flush()  # the ledger stays open for its owner; what this runtime queued is written
        if self._owns_cache and self.cache is not None:
            self.cache.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

