"""Executors run subtasks: prompt assembly and every model call under the budget guard."""

from ._executor import Executor, aggregate, subtask_prompt
from ._guard import BudgetGuard, BudgetStop, CallContext, RunCharges, describe_refusal

__all__ = [
    "BudgetGuard",
    "BudgetStop",
    "CallContext",
    "Executor",
    "RunCharges",
    "aggregate",
    "describe_refusal",
    "subtask_prompt",
]
