"""The runtime: agents, budgets, tasks, outcomes and the run loop."""

from ._agent import Agent
from ._budget import Budget
from ._limits import Limit, Limits
from ._runtime import Runtime
from ._shadow import Shadow
from ._task import Outcome, Task, TaskStatus

__all__ = ["Agent", "Budget", "Limit", "Limits", "Outcome", "Runtime", "Shadow", "Task", "TaskStatus"]
