"""The aggregator: one answer from a plan's outputs."""

from __future__ import annotations

from collections.abc import Mapping

from ..planners._plan import Plan
from ..providers._types import Message, ModelRequest
from ..router import Tier
from ._context import CallContext
from ._guard import BudgetGuard

COMBINE_PROMPT = "Combine these results into one complete answer to the task."


def final_subtasks(plan: Plan) -> list[str]:
    """Ids of the subtasks nothing else depends on: together they answer the task."""
    needed = {d for s in plan.subtasks for d in s.depends_on}
    return [s.id for s in plan.subtasks if s.id not in needed]


async def combine(
    guard: BudgetGuard,
    ctx: CallContext,
    tier: Tier,
    instructions: str,
    task_input: str,
    plan: Plan,
    outputs: Mapping[str, str],
) -> str:
    """The single final output as it is, or several combined by one call on ``tier`` (kind ``aggregate``)."""
    finals = final_subtasks(plan)
    if len(finals) == 1:
        return outputs[finals[0]]
    results = "\n\n".join(f"### {sid}\n{outputs[sid]}" for sid in finals)
    request = ModelRequest(
        model=tier.model, system=instructions, max_tokens=tier.max_tokens,
        messages=(Message(role="user", content=f"Task: {task_input}\n\nResults of its parts:\n\n{results}\n\n"
                          + COMBINE_PROMPT),),
    )
    response = await guard.call(ctx, tier, request, kind="aggregate", note="combine final subtasks")
    return response.text


def aggregate(plan: Plan, outputs: Mapping[str, str]) -> str:
    """Combine outputs: the results of subtasks nothing else depends on, in plan order."""
    finals = [outputs[sid] for sid in final_subtasks(plan) if sid in outputs]
    if not finals:  # a stop before any final subtask: return whatever was done
        finals = [outputs[s.id] for s in plan.subtasks if s.id in outputs]
    return "\n\n".join(finals)
