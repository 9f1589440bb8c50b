"""Runs a plan: one guarded model call per subtask, dependencies first."""

from __future__ import annotations

from collections.abc import Mapping

from ..planners._plan import Plan, Subtask, topological_order
from ..providers._types import Message, ModelRequest
from ..router import RouteDecision
from ._guard import BudgetGuard, CallContext


def subtask_prompt(subtask: Subtask, context: Mapping[str, str]) -> str:
    """The user message for a subtask: its goal, after its dependencies' outputs."""
    if not context:
        return subtask.goal
    parts = [f"Result of step {sid}:\n{out}" for sid, out in context.items()]
    return "\n\n".join([*parts, f"Now: {subtask.goal}"])


class Executor:
    """Executes a plan's subtasks in dependency order under the budget guard."""

    def __init__(self, guard: BudgetGuard) -> None:
        self.guard = guard

    async def run(
        self,
        ctx: CallContext,
        plan: Plan,
        routes: Mapping[str, RouteDecision],
        instructions: str,
        outputs: dict[str, str],
    ) -> dict[str, str]:
        """Run every subtask, filling ``outputs`` as they finish (so a stop keeps what was done)."""
        for subtask in topological_order(plan.subtasks):
            decision = routes[subtask.id]
            context = {d: outputs[d] for d in subtask.depends_on}
            request = ModelRequest(
                model=decision.tier.model,
                system=instructions,
                messages=(Message(role="user", content=subtask_prompt(subtask, context)),),
                max_tokens=decision.tier.max_tokens,
            )
            response = await self.guard.call(
                ctx, decision.tier, request, kind="execute", subtask_id=subtask.id, note=decision.reason
            )
            outputs[subtask.id] = response.text
        return outputs


def aggregate(plan: Plan, outputs: Mapping[str, str]) -> str:
    """Combine outputs: the results of subtasks nothing else depends on, in plan order."""
    needed = {d for s in plan.subtasks for d in s.depends_on}
    finals = [outputs[s.id] for s in plan.subtasks if s.id not in needed and s.id in outputs]
    if not finals:  # a stop before any final subtask: return whatever was done
        finals = [outputs[s.id] for s in plan.subtasks if s.id in outputs]
    return "\n\n".join(finals)
