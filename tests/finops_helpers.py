"""Ledger rows for the FinOps tests: finished tasks with one priced call each."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from paymaster import Ledger
from paymaster._money import to_picos
from paymaster.ledger import TaskRecord

DAY1 = dt.datetime(2026, 11, 2, 12, tzinfo=dt.UTC).timestamp()


def add_task(db: Ledger, task_id: str, agent: str, usd: str | None, *, tenant: str = "acme",
             tags: dict[str, str] | None = None, success: bool = True, at: float = DAY1,
             model: str = "gpt-4o-mini", provider: str = "openai", kind: str = "execute") -> None:
    """One finished task with one call costing ``usd`` (None: unpriced), baseline twice that."""
    db.open_task(TaskRecord(id=task_id, agent=agent, agent_version="1", tenant=tenant, tags=tags or {}, created_at=at))
    cost = None if usd is None else to_picos(Decimal(usd))
    db.record_step({"task_id": task_id, "kind": kind, "cost_picos": cost, "provider": provider, "model": model,
                    "tier": "fast", "input_tokens": 100, "output_tokens": 10,
                    "baseline_picos": None if cost is None else 2 * cost, "created_at": at})
    db.finish_task(task_id, status="succeeded" if success else "failed", stop_reason=None, output="ok",
                   success=success)
