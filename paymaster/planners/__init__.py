"""Planners split a task into complexity-tagged subtasks."""

from ._plan import Complexity, Plan, PlanContext, Planner, PlanInvalid, SingleStepPlanner, Subtask, topological_order

__all__ = [
    "Complexity",
    "Plan",
    "PlanContext",
    "PlanInvalid",
    "Planner",
    "SingleStepPlanner",
    "Subtask",
    "topological_order",
]
