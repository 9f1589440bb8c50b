"""Running a cascade route: answer on a cheap tier, check on another, escalate when the two answers differ.

Every stage is an ordinary guarded subtask run, so each is a ledger row
(kind ``execute``) whose cost counts against the task's budgets like any
other; the rows' notes say which stage each was and why it ran.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from ..planners._plan import Subtask
from ..router import RouteDecision, Tier, answer_key
from ..router._cascade import STAGES
from ._context import CallContext
from ._tools import Tool

RunSubtask = Callable[
    [CallContext, Subtask, RouteDecision, str, Mapping[str, str], Sequence[Tool]], Awaitable[str]
]


async def run_cascade(
    run_subtask: RunSubtask,
    ctx: CallContext,
    subtask: Subtask,
    decision: RouteDecision,
    instructions: str,
    context: Mapping[str, str],
    tools: Sequence[Tool] = (),
) -> str:
    """Run ``decision``'s cascade for ``subtask``; the answer tier's answer, or the escalation tier's on disagreement.

    The stages run one after another, so the same inputs give the same ledger.
    """
    stages = decision.cascade
    assert stages is not None, "run_cascade needs a decision with a cascade"

    def stage(tier: Tier, number: int, what: str) -> RouteDecision:
        return RouteDecision(subtask_id=decision.subtask_id, tier=tier,
                             reason=f"{decision.reason}; {STAGES[number - 1]} {what}")

    answer = await run_subtask(ctx, subtask, stage(stages.answer, 1, f"on {stages.answer.name}"),
                               instructions, context, tools)
    check = await run_subtask(
        ctx, subtask,
        stage(stages.check, 2, f"on {stages.check.name} (escalates to {stages.escalate.name} if its answer "
                               f"differs from {stages.answer.name}'s)"),
        instructions, context, tools,
    )
    if answer_key(answer) == answer_key(check):
        return answer
    said = f"{stages.answer.name} said {answer_key(answer)[:40]!r}, {stages.check.name} {answer_key(check)[:40]!r}"
    return await run_subtask(ctx, subtask, stage(stages.escalate, 3, f"to {stages.escalate.name} ({said})"),
                             instructions, context, tools)
