"""The report's covering indexes are part of the schema: new ledgers have them, older ones get them on upgrade."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect

from paymaster.ledger import Ledger
from paymaster.ledger._queries import agent_costs, summary
from paymaster.ledger._reader import Reader
from paymaster.ledger._views import build_report
from tests.finops_helpers import add_task

pytestmark = pytest.mark.ledgers

REPORT = {"ix_tasks_agent_cost", "ix_tasks_daily", "ix_tasks_human_cost"}  # on every database
SQLITE_ONLY = {"ix_tasks_rollup"}  # PostgreSQL cannot order a json column
OPEN = {"ix_tasks_open"}  # recovery's: only the open tasks, on every database
RETIRED = {"ix_tasks_day", "ix_tasks_agent", "ix_tasks_created_at", "ix_tasks_parent_id", "ix_tasks_status"}


def _indexes(url: Any) -> set[str]:
    db = Ledger(url, create_schema=False)
    try:
        return {str(ix["name"]) for ix in inspect(db.engine).get_indexes("tasks")} & (REPORT | SQLITE_ONLY | OPEN)
    finally:
        db.close()


def _expected(url: Any) -> set[str]:
    return (REPORT if str(url).startswith("postgresql") else REPORT | SQLITE_ONLY) | OPEN


def _drop_report_indexes(url: Any) -> None:
    """Make the ledger look like one an older Paymaster wrote: the tables without the report's indexes."""
    db = Ledger(url, create_schema=False)
    try:
        with db.engine.begin() as conn:
            for name in REPORT | SQLITE_ONLY | OPEN:
                conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
    finally:
        db.close()


def test_a_new_ledger_has_the_report_indexes(ledger: Ledger, ledger_path: Any) -> None:
    assert _indexes(ledger_path) == _expected(ledger_path)


def test_an_older_ledger_gets_them_once_however_many_workers_open_it(ledger_path: Any) -> None:
    db = Ledger(ledger_path)
    for i in range(30):
        add_task(db, f"t{i}", "triage" if i % 2 else "refund", f"0.{i + 1:02d}")
    db.close()
    _drop_report_indexes(ledger_path)
    assert _indexes(ledger_path) == set()
    retired = Ledger(ledger_path, create_schema=False)
    with retired.engine.begin() as conn:  # what older Paymasters built
        conn.exec_driver_sql("CREATE INDEX ix_tasks_day ON tasks (created_at, status, unpriced_calls, cost_picos)")
        conn.exec_driver_sql("CREATE INDEX ix_tasks_agent ON tasks (agent)")
        conn.exec_driver_sql("CREATE INDEX ix_tasks_created_at ON tasks (created_at)")
        conn.exec_driver_sql("CREATE INDEX ix_tasks_parent_id ON tasks (parent_id)")
        conn.exec_driver_sql("CREATE INDEX ix_tasks_status ON tasks (status)")
    retired.close()

    def start(_: int) -> None:
        Ledger(ledger_path).close()  # none fails on an index another worker was building

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(start, range(6)))
    assert _indexes(ledger_path) == _expected(ledger_path)
    db = Ledger(ledger_path, create_schema=False)
    assert not RETIRED & {ix["name"] for ix in inspect(db.engine).get_indexes("tasks")}  # every retired one
    db.close()


def test_the_report_reads_the_same_without_them(ledger_path: Any) -> None:
    db = Ledger(ledger_path)
    for i in range(12):
        add_task(db, f"t{i}", ("triage", "refund", "coder")[i % 3], f"0.{i + 1:02d}", tenant=f"c{i % 2}")
    db.close()
    with Reader(ledger_path) as reader:
        indexed = (summary(reader), agent_costs(reader))
    _drop_report_indexes(ledger_path)
    with Reader(ledger_path) as reader:
        assert (summary(reader), agent_costs(reader)) == indexed
    # A SQLite file is read through sqlite3, read-only: the next worker to open it builds them. Any other
    # database is read through a Ledger, which upgrades the schema as every worker does.
    assert _indexes(ledger_path) == (set() if isinstance(ledger_path, Path) else REPORT | OPEN)


def test_the_reports_scans_of_tasks_read_covering_indexes(ledger: Ledger, ledger_path: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    if not isinstance(ledger_path, Path):
        pytest.skip("SQLite's query plans; PostgreSQL picks its plan by table size")
    for i in range(20):
        add_task(ledger, f"t{i}", ("triage", "refund")[i % 2], f"0.{i + 1:02d}", tags={"team": "a"})
    add_task(ledger, "s1", "triage#shadow", "0.01")
    queries: list[tuple[str, dict[str, Any]]] = []
    rows = Reader.rows

    def recording(self: Reader, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        queries.append((sql, dict(params or {})))
        return rows(self, sql, params)

    monkeypatch.setattr(Reader, "rows", recording)
    with Reader(ledger_path) as reader:
        report = build_report(reader, charts=True)
    assert report.summary.tasks == 20 and [d.agent for d in report.distributions] == ["refund", "triage"]
    conn = sqlite3.connect(ledger_path)
    table_scans = [
        (sql, detail) for sql, params in queries
        for *_, detail in conn.execute("EXPLAIN QUERY PLAN " + sql, params)
        if str(detail).startswith("SCAN tasks") and "COVERING INDEX" not in str(detail)
    ]
    conn.close()
    assert table_scans == []  # a scan of every task reads a narrow covering index, never the rows


def test_recovery_finds_the_open_tasks_through_their_partial_index(ledger: Ledger, ledger_path: Any) -> None:
    if not isinstance(ledger_path, Path):
        pytest.skip("SQLite's query plans; PostgreSQL picks its plan by table size")
    from paymaster.ledger._liveness import OPEN_TASKS

    conn = sqlite3.connect(ledger_path)
    plan = [str(row[-1]) for row in conn.execute(f"EXPLAIN QUERY PLAN {OPEN_TASKS}")]
    conn.close()
    assert plan == ["SEARCH tasks USING INDEX ix_tasks_open (status=?)"]
