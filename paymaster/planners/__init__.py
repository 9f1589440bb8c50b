"""Planners split a task into complexity-tagged subtasks."""

from ._llm import LLMPlanner, is_simple
from ._plan import Complexity, Plan, PlanContext, PlanInvalid, Planner, SingleStepPlanner, Subtask, topological_order

__all__ = [
    "Complexity",
    "LLMPlanner",
    "Plan",
    "PlanContext",
    "PlanInvalid",
    "Planner",
    "SingleStepPlanner",
    "Subtask",
    "is_simple",
    "topological_order",
]
