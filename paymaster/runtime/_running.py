"""Tasks in flight in this process: opening one, and what the kill switch and nested runs need to find them.

Opening a task queues its ledger row and creates its accounts (its own, its
retries', and every shared account above it, inherited from a parent task when
it nests) in the same write, and gives the ``Running`` record of it.
"""

from __future__ import annotations

import contextvars
import os
import time
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any

import anyio

from .._money import to_picos
from ..ledger import HOST, Caps, Ledger
from ._budget import Budget
from ._limits import Limits
from ._task import Task


@dataclass
class Running:
    """A task in flight in this process: what the kill switch needs to stop it."""

    task: Task
    depth: int
    accounts: tuple[str, ...]
    max_depth: int | None
    usd_capped: bool = False  # some account of its chain caps dollars
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    killed: str | None = None


CURRENT: contextvars.ContextVar[Running | None] = contextvars.ContextVar("paymaster_task", default=None)


@lru_cache(maxsize=256)  # a Budget is frozen, and most tasks share their agent's: convert each once
def budget_record(budget: Budget) -> dict[str, Any]:
    """A budget as the JSON object the task row and the task's view record (cached: do not change it)."""
    return budget.model_dump(mode="json", exclude_none=True)  # shared: callers copy before changing it


@lru_cache(maxsize=256)
def _budget_caps(budget: Budget) -> tuple[Caps, Caps]:
    return budget.caps(), budget.retry_caps()


_NO_CAPS = Caps()


def retry_account(task: Task) -> str | None:
    """The account a task's retries are also held on; None when its budget caps no retries (no such account)."""
    return f"task:{task.id}:retries" if _budget_caps(task.budget)[1] != _NO_CAPS else None


def open_task(
    ledger: Ledger, limits: Limits, policy_version: str | None, task: Task, parent: Running | None,
    human_cost_usd: str | None = None,
) -> Running:
    """Record the task and create its accounts: its own, its retries', and every account above it."""
    chain = limits.chain(task.agent, task.tenant, task.tags)
    caps_own, caps_retries = _budget_caps(task.budget)
    own = {f"task:{task.id}": caps_own}
    retries = retry_account(task)
    if retries is not None:  # without retry caps, retries are held on the task's accounts alone
        own[retries] = caps_retries
    depth = 0 if parent is None else parent.depth + 1
    inherited = () if parent is None else parent.accounts
    caps = [b for b in (task.budget.depth, None if parent is None else parent.max_depth) if b is not None]
    ledger.open_task_later(
        {
            "id": task.id, "agent": task.agent, "agent_version": task.agent_version, "tenant": task.tenant,
            "tags": task.tags, "budget": budget_record(task.budget),
            "input_preview": task.input[:500], "created_at": time.time(), "depth": depth,
            "parent_id": None if parent is None else parent.task.id, "owner": f"{HOST}:{os.getpid()}",
            "policy_version": policy_version,
            "human_cost_picos": None if human_cost_usd is None else to_picos(Decimal(human_cost_usd)),
        },
        {**own, **chain},
    )
    accounts = tuple(dict.fromkeys([f"task:{task.id}", *inherited, *chain]))
    usd_capped = (task.budget.usd is not None or any(c is not None and c.picos is not None for c in chain.values())
                  or (parent is not None and parent.usd_capped))
    return Running(task=task, depth=depth, accounts=accounts, max_depth=min(caps) if caps else None,
                   usd_capped=usd_capped)
