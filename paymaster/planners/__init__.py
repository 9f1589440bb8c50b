"""Planners split a task into complexity-tagged subtasks."""

from ._plan import Complexity, Plan, Planner, SingleStepPlanner, Subtask, topological_order

__all__ = ["Complexity", "Plan", "Planner", "SingleStepPlanner", "Subtask", "topological_order"]
