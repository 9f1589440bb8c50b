"""Executors run subtasks: prompt assembly, tool calls, retries and every model call under the budget guard."""

from ._aggregate import aggregate, combine, final_subtasks
from ._cached import Cache
from ._context import BudgetStop, CallContext, ModelRejected, RunCharges, may_have_billed
from ._executor import ExecSettings, Executor, subtask_prompt
from ._guard import BudgetGuard
from ._observe import Halt, Observer, TaskView
from ._policy import ApprovalRequest, Approver, CapPolicy, describe_refusal
from ._rates import Rate, RateGate
from ._retry import RetryPolicy
from ._tools import Tool, ToolPolicy, tool

__all__ = [
    "ApprovalRequest",
    "Approver",
    "BudgetGuard",
    "BudgetStop",
    "Cache",
    "CallContext",
    "CapPolicy",
    "ExecSettings",
    "Executor",
    "Halt",
    "ModelRejected",
    "Observer",
    "Rate",
    "RateGate",
    "RetryPolicy",
    "RunCharges",
    "TaskView",
    "Tool",
    "ToolPolicy",
    "aggregate",
    "combine",
    "describe_refusal",
    "final_subtasks",
    "may_have_billed",
    "subtask_prompt",
    "tool",
]
