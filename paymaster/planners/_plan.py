"""Plans: complexity-tagged subtasks that form a DAG."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..providers._types import ModelRequest, ModelResponse


class Complexity(StrEnum):
    """How hard a subtask is; the router maps it to a tier."""

    SIMPLE = "simple"
    MODERATE = "moderate"
    COMPLEX = "complex"


class Subtask(BaseModel):
    """One unit of work in a plan."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1, max_length=64)
    goal: str = Field(min_length=1)
    complexity: Complexity = Complexity.MODERATE
    depends_on: tuple[str, ...] = ()
    expected_output: str = ""


class Plan(BaseModel):
    """Subtasks whose ids are unique and whose dependencies form a DAG."""

    model_config = ConfigDict(frozen=True)

    subtasks: tuple[Subtask, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_dag(self) -> Plan:
        ids = [s.id for s in self.subtasks]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"subtask ids must be unique; repeated: {dupes}")
        known = set(ids)
        for s in self.subtasks:
            missing = [d for d in s.depends_on if d not in known]
            if missing:
                raise ValueError(f"subtask {s.id!r} depends on unknown subtask(s) {missing}")
        order = topological_order(self.subtasks)
        if len(order) != len(self.subtasks):
            stuck = sorted(known - {s.id for s in order})
            raise ValueError(f"dependencies form a cycle among subtasks {stuck}")
        return self


def topological_order(subtasks: tuple[Subtask, ...]) -> list[Subtask]:
    """Subtasks in an order where each comes after its dependencies (cycles are left out)."""
    done: set[str] = set()
    order: list[Subtask] = []
    pending = list(subtasks)
    while pending:
        ready = [s for s in pending if all(d in done for d in s.depends_on)]
        if not ready:
            break
        for s in ready:
            order.append(s)
            done.add(s.id)
        pending = [s for s in pending if s.id not in done]
    return order


@dataclass(frozen=True)
class PlanContext:
    """What a planner may use: the agent's defaults and a budgeted model call on the planner tier.

    ``call`` goes through the budget guard and is recorded as a ledger step of
    kind ``plan``; a planner never talks to a provider directly.
    """

    default_complexity: Complexity
    max_subtasks: int
    call: Callable[[ModelRequest], Awaitable[ModelResponse]]
    model: str


class PlanInvalid(Exception):
    """The planner could not produce a valid plan, even after its repair attempt."""

    def __init__(self, reason: str, raw: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw


class Planner(Protocol):
    """Turns a task's input into a plan."""

    async def plan(self, goal: str, ctx: PlanContext) -> Plan:
        """Return a validated plan for ``goal`` or raise PlanInvalid."""


class SingleStepPlanner:
    """The plan with one subtask: the whole input, at the agent's complexity. Costs nothing."""

    async def plan(self, goal: str, ctx: PlanContext) -> Plan:
        """Return a one-subtask plan."""
        # One subtask with no dependencies is a DAG: the plan needs no check of its own (the subtask has).
        return Plan.model_construct(subtasks=(Subtask(id="main", goal=goal, complexity=ctx.default_complexity),))
