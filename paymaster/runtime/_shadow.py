"""Shadow evaluation: re-run a sample of live subtasks on a reference tier, in the background, on its own budget.

A sampled subtask is answered again on the reference tier after the live task
has its answer, and the two answers are compared: by the agent's ``agrees``
when it decides, as equal when they read the same, else by a judge prompt on
the cheapest tier. Each shadow run is a task row of its own (agent
``NAME#shadow``, see ``paymaster.ledger._shadows``) whose calls are steps of
kind ``eval`` charged to the eval account only (``eval:shadow:day:YYYY-MM-DD``,
capped at ``Shadow.budget`` a day): shadowing never spends a task's, agent's or
tenant's budget, never waits on the live task's locks, and a failure in it is
recorded on its own row, never raised into the live task.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources
from string import Template
from typing import Annotated, Any

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .._money import to_picos
from ..errors import ConfigurationError
from ..executors import BudgetGuard, BudgetStop, CallContext, RetryPolicy, RunCharges
from ..executors._executor import subtask_prompt
from ..ledger import Caps, Ledger, new_task_id
from ..ledger._shadows import shadow_agent
from ..planners import Plan
from ..planners._plan import Subtask
from ..pricing import PriceBook
from ..providers._types import Message, ModelRequest, Provider
from ..router import RouteDecision, Tier, TierTable, answer_key
from ._agent import Agent
from ._limits import kill_scopes
from ._task import Task, TaskStatus

JUDGE_MAX_TOKENS = 8  # the judge answers one word


class Shadow(BaseModel):
    """Shadow evaluation settings: re-run ``rate`` of live subtasks on ``tier``, spending at most ``budget`` a day.

    ``budget`` is US dollars per UTC day (a string, int or Decimal) on the eval
    account, shared by every process using the ledger. ``judge`` is the tier
    that compares two answers when the agent does not (default: the cheapest).
    ``seed`` makes the sample repeatable. At most ``concurrency`` shadow runs
    call at once; past ``max_pending`` waiting runs, new samples are skipped.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
    tier: Annotated[str, Field(min_length=1)]
    budget: Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
    judge: str | None = None
    seed: int | None = None
    concurrency: Annotated[int, Field(ge=1)] = 2
    max_pending: Annotated[int, Field(ge=1)] = 100

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}, got {e['input']!r}"
                                 for e in exc.errors(include_url=False))
            raise ConfigurationError(f"Shadow(...): {problems}") from None

    @field_validator("budget", mode="before")
    @classmethod
    def _no_float_money(cls, value: Any) -> Any:
        if isinstance(value, float | bool):
            raise ValueError("dollars are a string such as \"2.00\" (or an int or Decimal), not a float")
        return value

    def account(self, now: float) -> str:
        """The eval account that pays for shadow runs started at ``now`` (one per UTC day)."""
        return f"eval:shadow:day:{dt.datetime.fromtimestamp(now, dt.UTC):%Y-%m-%d}"


class _Skipped(Exception):
    """A shadow run that is not to be made (its live task's scope was killed meanwhile)."""


@dataclass(frozen=True)
class _Job:
    """One sampled subtask: what the live run answered and what the shadow run needs to ask again."""

    task: Task
    agent: type[Agent]
    instance: Agent
    subtask: Subtask
    decision: RouteDecision
    context: Mapping[str, str]
    output: str


@cache
def _judge_prompt() -> Template:
    text = resources.files("paymaster.runtime").joinpath("prompts", "shadow_judge.md").read_text(encoding="utf-8")
    return Template(text)


def judge_verdict(reply: str) -> bool | None:
    """A judge's one-word reply as a verdict: YES is True, NO is False, anything else is no verdict."""
    words = reply.strip().split()
    word = words[0].strip(".,;:!*\"'`").upper() if words else ""
    return {"YES": True, "NO": False}.get(word)


def _routed(decision: RouteDecision) -> str:
    stages = decision.cascade
    if stages is None:
        return decision.tier.name
    return f"{stages.answer.name} + {stages.check.name} check -> {stages.escalate.name}"


class Shadower:
    """Samples finished subtasks and runs their shadow evaluations in the background."""

    def __init__(
        self, config: Shadow, ledger: Ledger, prices: PriceBook, tiers: TierTable,
        provider_for: Callable[[Tier], Provider],
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.reference = tiers.get(config.tier)
        self.judge = tiers.get(config.judge) if config.judge is not None else tiers.tiers[0]
        for tier in (self.reference, self.judge):
            if prices.get(tier.provider, tier.model) is None:
                raise ConfigurationError(
                    f"Runtime(shadow=...): the price of {tier.provider}/{tier.model} (tier {tier.name!r}) is "
                    "unknown, so the shadow budget cannot be enforced: add its price to your config or price file")
        self.baseline = prices.get(tiers.deepest.provider, tiers.deepest.model)
        # A guard of its own: shadow calls never wait on the live calls' locks or waiters, and never retry.
        self.guard = BudgetGuard(ledger, prices, tiers, provider_for, RetryPolicy(max_attempts=1), 0.0)
        self._random = random.Random(config.seed)
        self._limiter = anyio.CapacityLimiter(config.concurrency)
        self._pending: set[asyncio.Task[None]] = set()
        self.skipped = 0

    @property
    def tiers(self) -> tuple[str, str]:
        """The tiers shadow runs call: the reference and the judge."""
        return self.reference.name, self.judge.name

    def submit(
        self, task: Task, agent: type[Agent], instance: Agent, plan: Plan,
        decisions: Mapping[str, RouteDecision], outputs: Mapping[str, str],
    ) -> None:
        """Sample the task's answered subtasks and start their shadow runs; returns at once, never raises."""
        if agent.tools:
            return  # tools may act on the world (and cost): a re-run could repeat what they did
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # another event loop than asyncio's: no background runs to start
            self.skipped += len(plan.subtasks)
            return
        for subtask in plan.subtasks:
            if subtask.id not in outputs or self._random.random() >= self.config.rate:
                continue
            if len(self._pending) >= self.config.max_pending:
                self.skipped += 1
                continue
            job = _Job(task, agent, instance, subtask, decisions[subtask.id],
                       {d: outputs[d] for d in subtask.depends_on if d in outputs}, outputs[subtask.id])
            running = loop.create_task(self._run(job))
            self._pending.add(running)
            running.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait until every shadow run started so far has finished and is recorded."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def _run(self, job: _Job) -> None:
        now = time.time()
        shadow_id = new_task_id()
        account = self.config.account(now)
        verdict: dict[str, Any] = {"of": job.task.id, "subtask": job.subtask.id, "routed": _routed(job.decision),
                                   "reference": self.reference.name, "agreed": None, "scored_by": ""}
        self.ledger.open_task_later(
            {"id": shadow_id, "agent": shadow_agent(job.task.agent), "agent_version": job.task.agent_version,
             "tenant": job.task.tenant, "tags": dict(job.task.tags), "budget": {"usd": str(self.config.budget)},
             "input_preview": job.subtask.goal[:500], "created_at": now, "parent_id": job.task.id},
            {account: Caps(picos=to_picos(self.config.budget)), f"task:{shadow_id}:retries": Caps(calls=0)},
        )
        ctx = CallContext(
            task_id=shadow_id, agent=shadow_agent(job.task.agent), tenant=job.task.tenant, accounts=(account,),
            retry_account=f"task:{shadow_id}:retries", charges=RunCharges(), baseline=self.baseline,
            agent_version=job.task.agent_version,
        )
        status, reason = TaskStatus.SUCCEEDED, None
        try:
            # A kill switch thrown on the live task's agent, tenant or tag since it ran stops its shadows too
            # (they spend the eval account only, so no reservation of theirs would see the flag).
            killed = await anyio.to_thread.run_sync(
                self.ledger.killed_among, kill_scopes(job.task.agent, job.task.tenant, job.task.tags)
            )
            if killed:
                status = TaskStatus.KILLED
                reason = f"killed: the kill switch was thrown for {', '.join(sorted(killed))}"
                raise _Skipped
            async with self._limiter:
                verdict["agreed"], verdict["scored_by"] = await self._compare(ctx, job)
            if verdict["agreed"] is None:
                status, reason = TaskStatus.FAILED, "no verdict: the judge's reply was neither YES nor NO"
        except _Skipped:
            pass
        except BudgetStop as stop:
            status, reason = TaskStatus.BUDGET_EXCEEDED, f"shadow budget: {stop.reason}"
        except Exception as exc:  # a shadow run never fails the live task: what went wrong is on its own row
            status, reason = TaskStatus.FAILED, f"{type(exc).__name__}: {exc}"
        except BaseException as exc:  # cancelled (the event loop is ending): close the row, then let it through
            with anyio.CancelScope(shield=True):
                await self.ledger.afinish_task(shadow_id, ctx.charges.totals, status=TaskStatus.FAILED.value,
                                               stop_reason=f"{type(exc).__name__}: cancelled", plan={"shadow": verdict})
            raise
        await self.ledger.afinish_task(shadow_id, ctx.charges.totals, status=status.value, stop_reason=reason,
                                       success=verdict["agreed"], plan={"shadow": verdict})

    async def _compare(self, ctx: CallContext, job: _Job) -> tuple[bool | None, str]:
        """Whether the live answer matches the reference tier's, and what decided it."""
        if job.decision.cascade is None and job.decision.tier.name == self.reference.name:
            return True, "same tier"  # the live answer came from the reference tier itself: nothing to pay for
        note = f"shadow of task {job.task.id} subtask {job.subtask.id} ({_routed(job.decision)}): reference run"
        request = ModelRequest(
            model=self.reference.model, system=job.instance.instructions, max_tokens=self.reference.max_tokens,
            messages=(Message(role="user", content=subtask_prompt(job.subtask, job.context)),),
        )
        reference = (await self.guard.call(ctx, self.reference, request, kind="eval", subtask_id=job.subtask.id,
                                           note=note)).text
        decided = job.instance.agrees(job.output, reference)
        if decided is not None:
            return bool(decided), "agent"
        if answer_key(job.output) == answer_key(reference):
            return True, "same answer"
        prompt = _judge_prompt().safe_substitute(task=job.subtask.goal, first=job.output, second=reference)
        judged = await self.guard.call(
            ctx, self.judge,
            ModelRequest(model=self.judge.model, max_tokens=min(JUDGE_MAX_TOKENS, self.judge.max_tokens),
                         messages=(Message(role="user", content=prompt),)),
            kind="eval", subtask_id=job.subtask.id,
            note=f"shadow of task {job.task.id} subtask {job.subtask.id}: judge, does the answer match "
                 f"{self.reference.name}'s?",
        )
        return judge_verdict(judged.text), f"judge on {self.judge.name}"

