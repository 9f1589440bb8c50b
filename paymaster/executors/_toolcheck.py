"""Tool policies at call time: who may call a tool, and when a person must approve the call."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._money import fmt_usd, from_picos, to_picos
from ._context import ask_person
from ._policy import ApprovalRequest
from ._tools import Tool

if TYPE_CHECKING:
    from ._context import CallContext


async def check_tool_policy(ctx: CallContext, tool: Tool) -> str | None:
    """Why ``tool``'s policy refuses this call, or None; asks the approver past its thresholds."""
    policy = tool.policy
    if policy.roles is not None and ctx.role not in policy.roles:
        return (f"tool {tool.name!r} is for agents with role {sorted(policy.roles)}; agent {ctx.agent!r} has "
                f"role {ctx.role!r}")
    if policy.min_budget_usd is not None and (ctx.budget_usd is None or ctx.budget_usd < policy.min_budget_usd):
        budget = "no USD budget" if ctx.budget_usd is None else f"a budget of {fmt_usd(ctx.budget_usd)}"
        return (f"tool {tool.name!r} is for tasks with a budget of at least {fmt_usd(policy.min_budget_usd)}; "
                f"this task has {budget}")
    calls, spent = ctx.tool_use.get(tool.name, (0, 0))
    why = None
    if policy.approve_after_calls is not None and calls >= policy.approve_after_calls:
        why = (f"call {calls + 1} of tool {tool.name!r} in this task "
               f"(approval needed past {policy.approve_after_calls})")
        request_cap, request_used, dimension = policy.approve_after_calls, calls, "tool_calls"
    elif policy.approve_over_usd is not None and spent >= to_picos(policy.approve_over_usd):
        why = (f"{fmt_usd(from_picos(spent))} spent on tool {tool.name!r} in this task (approval needed past "
               f"{fmt_usd(policy.approve_over_usd)})")
        request_cap, request_used, dimension = to_picos(policy.approve_over_usd), spent, "usd"
    if why is None:
        return None
    if ctx.approver is None:
        return f"{why}, and the runtime has no approver"
    price = 0 if tool.price_usd is None else to_picos(tool.price_usd)
    request = ApprovalRequest(
        task_id=ctx.task_id, agent=ctx.agent, tenant=ctx.tenant, account=f"tool:{tool.name}",
        dimension=dimension, cap=request_cap, used=request_used, needed=1 if dimension == "tool_calls" else price,
        reason=why,
    )
    approved = await ask_person(ctx, request)
    return None if approved else f"{why}: not approved"
