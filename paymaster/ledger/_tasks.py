"""The lean per-task path: a task row written in a few short statements, its totals kept as steps are written.

A task's totals (cost, baseline, tokens, calls, cache hits) are added up in
memory as each of its steps is handed to the writer, with exactly the rules a
sum over its step rows would use, and written once when the task finishes: no
re-reading of rows just written, no ORM objects on the per-call path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from pydantic_core import PydanticUndefined

from ._sql import Tx
from ._tables import TaskRecord

_TASK_COLUMNS = list(TaskRecord.model_fields)
_TASK_COLUMN_SET = frozenset(_TASK_COLUMNS)
_JSON_COLUMNS = frozenset({"tags", "budget", "plan"})
_INSERT_TASK = (
    f"INSERT INTO tasks ({', '.join(_TASK_COLUMNS)}) VALUES ({', '.join(':' + c for c in _TASK_COLUMNS)})"
)
_COUNTED = ("ok", "error", "unsettled")
_TASK_DEFAULTS: dict[str, Any] = {
    name: (f.default_factory() if f.default_factory is not None else f.default)  # type: ignore[call-arg]
    for name, f in TaskRecord.model_fields.items()
    if f.default is not PydanticUndefined or f.default_factory is not None
}


@dataclass
class Totals:
    """What a task has cost so far, summed from the steps written for it."""

    cost_picos: int = 0
    baseline_picos: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0
    unpriced_calls: int = 0
    saved_picos: int = 0
    cache_hits: int = 0

    def add(self, step: Mapping[str, Any]) -> None:
        """Count one step row as the ledger's sums over the task's rows would."""
        status, kind, cost = step.get("status", "ok"), step.get("kind"), step.get("cost_picos")
        self.cost_picos += cost or 0
        self.baseline_picos += step.get("baseline_picos") or 0
        self.input_tokens += step.get("input_tokens") or 0
        self.output_tokens += step.get("output_tokens") or 0
        self.saved_picos += step.get("saved_picos") or 0
        if status in _COUNTED and kind not in ("tool", "cache_hit"):
            self.calls += 1
        if cost is None and status in ("ok", "error"):
            self.unpriced_calls += 1
        if kind == "cache_hit":
            self.cache_hits += 1

    def as_row(self) -> dict[str, int]:
        """The totals as task columns."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _column_value(column: str, value: Any) -> Any:
    if column in _JSON_COLUMNS and value is not None:
        return json.dumps(value)
    return value  # a bool stays one: PostgreSQL's column is boolean, SQLite stores it as 0/1


def insert_task_statement(record: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The statement writing a new task row (columns not given take their defaults); parameters named as columns."""
    row = {**_TASK_DEFAULTS, **record}
    return _INSERT_TASK, {c: _column_value(c, row[c]) for c in _TASK_COLUMNS}


def check_task_columns(values: Mapping[str, Any]) -> None:
    """Raise ValueError naming any key of ``values`` that is not a column of ``tasks``."""
    unknown = values.keys() - _TASK_COLUMN_SET
    if unknown:
        raise ValueError(f"tasks has no column(s) {sorted(unknown)}")


def update_task_tx(tx: Tx, task_id: str, values: Mapping[str, Any]) -> None:
    """Set columns of a task row."""
    check_task_columns(values)
    assignments = ", ".join(f"{c} = :{c}" for c in values)
    # An interrupted task was closed by another worker that took this one for dead: it stays so.
    tx.execute(
        f"UPDATE tasks SET {assignments} WHERE id = :task_id AND status <> 'interrupted'",
        {**{c: _column_value(c, v) for c, v in values.items()}, "task_id": task_id},
    )
