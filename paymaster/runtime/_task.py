"""Tasks, their statuses and the Outcome a run returns."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from ..providers._types import Usage
from ._budget import Budget


class TaskStatus(StrEnum):
    """How a task ended."""

    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    BUDGET_EXCEEDED = "budget_exceeded"
    KILLED = "killed"
    PLAN_INVALID = "plan_invalid"
    INTERRUPTED = "interrupted"
    MODEL_REJECTED = "model_rejected"
    HALTED = "halted"
    RATE_LIMITED = "rate_limited"


class Task(BaseModel):
    """What was asked: an agent, an input, who asked and under which budget."""

    model_config = ConfigDict(frozen=True)

    id: str
    agent: str
    agent_version: str
    input: str
    tenant: str
    tags: dict[str, str] = Field(default_factory=dict)
    budget: Budget = Field(default_factory=Budget)


class Outcome(BaseModel):
    """What a task produced and what it cost.

    ``cost_usd`` is ``None`` when a call's price was unknown; ``baseline_usd``
    is what the same tokens would have cost on the deepest tier.
    """

    model_config = ConfigDict(frozen=True)

    task_id: str
    agent: str
    tenant: str
    status: TaskStatus
    output: str
    success: bool | None
    cost_usd: Decimal | None
    baseline_usd: Decimal | None
    usage: Usage
    calls: int
    stop_reason: str | None = None
    cache_hits: int = 0
    cache_saved_usd: Decimal = Decimal(0)

    @property
    def cached(self) -> bool:
        """True when every model answer of the task came from the cache."""
        return self.cache_hits > 0 and self.calls == 0
    @property
    def saved_usd(self) -> Decimal | None:
        """Baseline minus actual cost, when both are known."""
        if self.cost_usd is None or self.baseline_usd is None:
            return None
        return self.baseline_usd - self.cost_usd
