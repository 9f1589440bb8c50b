"""Runs a plan's DAG: independent subtasks at the same time, each a guarded model call plus its tool calls."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import anyio
from anyio.abc import TaskGroup

from ..planners._plan import Plan, Subtask
from ..pricing import count_tokens
from ..providers._types import Message, ModelRequest
from ..router import RouteDecision, Tier
from ._cascade import run_cascade
from ._context import BudgetStop, CallContext
from ._guard import BudgetGuard
from ._tools import Tool

MAX_TOOL_ROUNDS = 10
SUMMARISE_PROMPT = (
    "Summarise the results below for a colleague who will continue the work. Keep every fact, figure, "
    "name, date and open question; drop repetition and pleasantries."
)


@dataclass(frozen=True)
class ExecSettings:
    """Per-agent execution settings: when to summarise context, and the tier that does it."""

    summarise_over: int | None
    cheap_tier: Tier


def subtask_prompt(subtask: Subtask, context: Mapping[str, str]) -> str:
    """The user message for a subtask: its goal, after its dependencies' outputs."""
    if not context:
        return subtask.goal
    parts = [f"Result of step {sid}:\n{out}" for sid, out in context.items()]
    return "\n\n".join([*parts, f"Now: {subtask.goal}"])


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception that explains a failed task group: a budget stop first, else the first error."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    return next((e for e in leaves if isinstance(e, BudgetStop)), leaves[0])


@dataclass
class _DagRun:
    """One plan's run: what its branches share.

    Kept in an object of its own rather than closed over by a nested function, so that
    nothing of a finished task (its context, outputs, routes) is left in a reference
    cycle for the garbage collector to find: it is freed as soon as the task ends.
    """

    ctx: CallContext
    routes: Mapping[str, RouteDecision]
    instructions: str
    outputs: dict[str, str]
    tools: Sequence[Tool]
    settings: ExecSettings | None
    waiting: dict[str, int]  # dependencies not yet done, per subtask
    dependents: dict[str, list[Subtask]]


class Executor:
    """Executes a plan under the budget guard."""

    def __init__(self, guard: BudgetGuard) -> None:
        self.guard = guard

    async def run(
        self,
        ctx: CallContext,
        plan: Plan,
        routes: Mapping[str, RouteDecision],
        instructions: str,
        outputs: dict[str, str],
        tools: Sequence[Tool] = (),
        settings: ExecSettings | None = None,
    ) -> dict[str, str]:
        """Run every subtask once its dependencies are done, filling ``outputs`` as they finish.

        ``outputs`` is filled in place so that a stop part-way keeps what was done.
        """
        waiting = {s.id: len(set(s.depends_on)) for s in plan.subtasks}  # dependencies not yet done
        dependents: dict[str, list[Subtask]] = {}
        for s in plan.subtasks:
            for dep in dict.fromkeys(s.depends_on):  # a dependency named twice still counts once
                dependents.setdefault(dep, []).append(s)
        run = _DagRun(ctx, routes, instructions, outputs, tools, settings, waiting, dependents)
        roots = [s for s in plan.subtasks if not s.depends_on]
        if len(plan.subtasks) == 1 or (len(roots) == 1 and all(len(v) <= 1 for v in dependents.values())):
            await self._chain(run, roots[0], None)  # a straight line: nothing runs beside it, no task group
            return outputs
        try:
            async with anyio.create_task_group() as tg:
                for root in roots[1:]:
                    tg.start_soon(self._chain, run, root, tg)
                await self._chain(run, roots[0], tg)
        except BaseExceptionGroup as group:
            raise first_error(group) from None
        return outputs

    async def _chain(self, run: _DagRun, subtask: Subtask, tg: TaskGroup | None) -> None:
        # Runs a subtask, then whichever subtask it was the last dependency of: a task per branch of
        # the plan, not per subtask (spawning a task costs more than most of a call's own work).
        current: Subtask | None = subtask
        settings = run.settings
        while current is not None:
            context = {d: run.outputs[d] for d in current.depends_on}
            if settings is not None and settings.summarise_over is not None:
                context = await self.summarise(run.ctx, current.id, context, settings.summarise_over,
                                               settings.cheap_tier)
            run.outputs[current.id] = await self.run_subtask(run.ctx, current, run.routes[current.id],
                                                             run.instructions, context, run.tools)
            ready = []
            for following in run.dependents.get(current.id, ()):
                run.waiting[following.id] -= 1  # ``dependents`` names each dependency once
                if run.waiting[following.id] == 0:
                    ready.append(following)
            for other in ready[1:]:
                assert tg is not None  # a plan with branches runs in a task group
                tg.start_soon(self._chain, run, other, tg)
            current = ready[0] if ready else None

    async def summarise(
        self, ctx: CallContext, subtask_id: str, context: Mapping[str, str], limit: int, tier: Tier
    ) -> dict[str, str]:
        """Summarise the oldest dependency outputs on the cheapest tier when the context passes ``limit`` tokens.

        Each summary is a ledger step of kind ``summarise``, so the cost of keeping
        context small is visible beside what it saved.
        """
        items = list(context.items())
        if len(items) == 0 or sum(count_tokens(v) for _, v in items) <= limit:
            return dict(context)
        oldest, newest = (items[:-1], items[-1:]) if len(items) > 1 else (items, [])
        text = "\n\n".join(f"Result of step {sid}:\n{out}" for sid, out in oldest)
        request = ModelRequest(
            model=tier.model, system=SUMMARISE_PROMPT, messages=(Message(role="user", content=text),),
            max_tokens=max(64, min(tier.max_tokens, limit // 2)),
        )
        response = await self.guard.call(ctx, tier, request, kind="summarise", subtask_id=subtask_id,
                                         note=f"context over {limit} tokens: summarised {len(oldest)} result(s)")
        label = ", ".join(sid for sid, _ in oldest) + " (summarised)"
        return {label: response.text, **dict(newest)}

    async def run_subtask(
        self,
        ctx: CallContext,
        subtask: Subtask,
        decision: RouteDecision,
        instructions: str,
        context: Mapping[str, str],
        tools: Sequence[Tool] = (),
    ) -> str:
        """One subtask: a model call, then rounds of tool calls and model calls until it answers."""
        if decision.cascade is not None:  # a cascade route: each stage is a run of its own
            return await run_cascade(self.run_subtask, ctx, subtask, decision, instructions, context, tools)
        by_name = {t.name: t for t in tools}
        messages: list[Message] = [Message(role="user", content=subtask_prompt(subtask, context))]
        tier = decision.tier
        for _ in range(MAX_TOOL_ROUNDS + 1):
            request = ModelRequest(
                model=tier.model,
                system=instructions,
                messages=tuple(messages),
                max_tokens=tier.max_tokens,
                tools=tuple(t.spec() for t in tools),
            )
            response = await self.guard.call(ctx, tier, request, kind="execute", subtask_id=subtask.id,
                                             note=decision.reason)
            if not response.tool_calls:
                return response.text
            messages.append(Message(role="assistant", content=response.text, tool_calls=response.tool_calls))
            for call in response.tool_calls:
                found = by_name.get(call.name)
                result = (
                    await self.guard.tool(ctx, found, call.arguments, subtask_id=subtask.id)
                    if found is not None
                    else f"error: there is no tool named {call.name!r}; available: {sorted(by_name)}"
                )
                messages.append(Message(role="tool", content=result, tool_call_id=call.id))
        # The model kept asking for tools: answer with what it last said.
        return next((m.content for m in reversed(messages) if m.role == "assistant"), "")

