"""Executors run subtasks: prompt assembly, tool calls, retries and every model call under the budget guard."""

from ._executor import ExecSettings, Executor, aggregate, subtask_prompt
from ._guard import BudgetGuard, BudgetStop, CallContext, RunCharges
from ._policy import ApprovalRequest, Approver, CapPolicy, describe_refusal
from ._retry import RetryPolicy
from ._tools import Tool, tool

__all__ = [
    "ApprovalRequest",
    "Approver",
    "BudgetGuard",
    "BudgetStop",
    "CallContext",
    "CapPolicy",
    "ExecSettings",
    "Executor",
    "RetryPolicy",
    "RunCharges",
    "Tool",
    "aggregate",
    "describe_refusal",
    "subtask_prompt",
    "tool",
]
