"""The task list and one task's calls without SQLModel: what ``paymaster ledger`` (and ``show``) shows and exports."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from .._money import from_picos, plain_usd
from ._reader import Reader
from ._scope import Scope, where

TASK_COLUMNS = (
    "id", "created_at", "finished_at", "agent", "agent_version", "tenant", "tags", "status", "stop_reason", "success",
    "calls", "input_tokens", "output_tokens", "cache_hits", "unpriced_calls", "cost_usd", "baseline_usd", "saved_usd",
)


@dataclass(frozen=True)
class TaskRow:
    """A task's listing columns, read without SQLModel (what ``paymaster ledger`` shows and exports)."""

    id: str
    created_at: float
    finished_at: float | None
    agent: str
    agent_version: str
    tenant: str
    tags: dict[str, str]
    status: str
    stop_reason: str | None
    success: bool | None
    calls: int
    input_tokens: int
    output_tokens: int
    cache_hits: int
    unpriced_calls: int
    cost_picos: int
    baseline_picos: int
    saved_picos: int


def recent_tasks(
    reader: Reader, *, limit: int = 50, tenant: str | None = None, agent: str | None = None
) -> list[TaskRow]:
    """The most recent tasks (running ones too), newest first."""
    cond, params = where(reader, Scope(tenant=tenant, agent=agent), finished=False)
    rows = reader.rows(
        "SELECT tasks.id, tasks.created_at, tasks.finished_at, tasks.agent, tasks.agent_version, tasks.tenant, "
        f"{reader.tags_text()}, tasks.status, tasks.stop_reason, tasks.success, tasks.calls, tasks.input_tokens, "
        "tasks.output_tokens, tasks.cache_hits, tasks.unpriced_calls, tasks.cost_picos, tasks.baseline_picos, "
        f"tasks.saved_picos FROM tasks WHERE {cond} ORDER BY {_newest_first(reader)} LIMIT {int(limit)}",
        params,
    )
    return [_task_row(r) for r in rows]


def _task_row(r: Sequence[Any]) -> TaskRow:
    """A TaskRow from the first 18 columns of the task list's SELECT."""
    return TaskRow(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]) if r[6] else {}, r[7], r[8],
                   None if r[9] is None else bool(r[9]), *(int(v or 0) for v in r[10:18]))


@dataclass(frozen=True)
class TaskDetail(TaskRow):
    """A task's listing columns and its budget and plan: what ``paymaster ledger show`` heads its calls with."""

    budget: dict[str, object]
    plan: dict[str, object] | None
    policy_version: str | None = None  # the config's policy_version it ran under


@dataclass(frozen=True)
class StepRow:
    """One call of a task as ``paymaster ledger show`` lists it."""

    subtask_id: str | None
    kind: str
    status: str
    provider: str | None
    model: str | None
    tier: str | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cost_picos: int | None
    reserved_picos: int
    latency_ms: float
    attempt: int
    error: str | None
    note: str | None


def _newest_first(reader: Reader) -> str:
    # Tasks opened in the same instant: on SQLite the one written last first, elsewhere by id, never at random.
    return f"tasks.created_at DESC, {'tasks.rowid' if reader.dialect == 'sqlite' else 'tasks.id'} DESC"


def _json(reader: Reader, column: str) -> str:
    # PostgreSQL's json columns come back as text through a cast, as SQLite keeps them.
    return f"tasks.{column}" if reader.dialect == "sqlite" else f"CAST(tasks.{column} AS TEXT)"


def _detail_rows(reader: Reader, cond: str, params: dict[str, Any], limit: int) -> list[TaskDetail]:
    rows = reader.rows(
        "SELECT tasks.id, tasks.created_at, tasks.finished_at, tasks.agent, tasks.agent_version, tasks.tenant, "
        f"{reader.tags_text()}, tasks.status, tasks.stop_reason, tasks.success, tasks.calls, tasks.input_tokens, "
        "tasks.output_tokens, tasks.cache_hits, tasks.unpriced_calls, tasks.cost_picos, tasks.baseline_picos, "
        f"tasks.saved_picos, {_json(reader, 'budget')}, {_json(reader, 'plan')}, tasks.policy_version "
        f"FROM tasks WHERE {cond} "
        f"ORDER BY {_newest_first(reader)} LIMIT {int(limit)}",
        params,
    )
    details = []
    for r in rows:
        listed = _task_row(r)
        details.append(TaskDetail(**{f.name: getattr(listed, f.name) for f in fields(TaskRow)},
                                  budget=json.loads(r[18]) if r[18] else {},
                                  plan=json.loads(r[19]) if r[19] else None, policy_version=r[20]))
    return details


def find_task(reader: Reader, task_id: str) -> TaskDetail | None:
    """One task by id, or by a prefix of its id that no other task's id starts with (as ``Ledger.task``)."""
    found = _detail_rows(reader, "tasks.id = :id", {"id": task_id}, 1)
    if not found:
        found = tasks_starting(reader, task_id, 2)
    return found[0] if len(found) == 1 else None


def tasks_starting(reader: Reader, prefix: str, limit: int) -> list[TaskDetail]:
    """Tasks whose id starts with ``prefix``, newest first, at most ``limit``."""
    # LIKE without escaping, as SQLAlchemy's startswith() wrote it for Ledger.task: the same ids match.
    return _detail_rows(reader, "tasks.id LIKE :pattern", {"pattern": prefix + "%"}, limit)


def task_steps(reader: Reader, task_id: str) -> list[StepRow]:
    """Every step of a task, in the order they were recorded."""
    rows = reader.rows(
        "SELECT subtask_id, kind, status, provider, model, tier, input_tokens, output_tokens, cache_read_tokens, "
        "cost_picos, reserved_picos, latency_ms, attempt, error, note FROM steps WHERE task_id = :id ORDER BY id",
        {"id": task_id},
    )
    return [StepRow(*r) for r in rows]


def task_rows(
    reader: Reader, *, limit: int = 50, tenant: str | None = None, agent: str | None = None
) -> list[dict[str, Any]]:
    """The most recent tasks, newest first, as export rows (cost None when a call had no price)."""
    out = []
    for t in recent_tasks(reader, limit=limit, tenant=tenant, agent=agent):
        unknown = bool(t.unpriced_calls)
        out.append({
            "id": t.id, "created_at": _iso(t.created_at), "finished_at": _iso(t.finished_at), "agent": t.agent,
            "agent_version": t.agent_version, "tenant": t.tenant, "tags": t.tags, "status": t.status,
            "stop_reason": t.stop_reason, "success": t.success, "calls": t.calls, "input_tokens": t.input_tokens,
            "output_tokens": t.output_tokens, "cache_hits": t.cache_hits, "unpriced_calls": t.unpriced_calls,
            "cost_usd": None if unknown else plain_usd(from_picos(t.cost_picos)),
            "baseline_usd": None if unknown else plain_usd(from_picos(t.baseline_picos)),
            "saved_usd": plain_usd(from_picos(t.saved_picos)),
        })
    return out


def _iso(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()
