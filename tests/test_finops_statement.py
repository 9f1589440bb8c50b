"""``paymaster statement``: a month's charges per agent or tag, shared costs apart or allocated, exact."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from paymaster import Ledger
from paymaster._money import to_picos
from paymaster.cli import app
from paymaster.ledger import TaskRecord
from paymaster.ledger._reader import Reader
from paymaster.ledger._statements import allocate, month_bounds, statement

D = Decimal
NOV = dt.datetime(2026, 11, 10, tzinfo=dt.UTC).timestamp()
OCT = dt.datetime(2026, 10, 31, 23, 59, tzinfo=dt.UTC).timestamp()
runner = CliRunner()


def task(db: Ledger, task_id: str, agent: str, steps: list[tuple[str, str | None]], *, tenant: str = "acme",
         tags: dict[str, str] | None = None, at: float = NOV, success: bool = True, status: str = "ok") -> None:
    """A task whose steps are (kind, usd) pairs, made at ``at``."""
    db.open_task(TaskRecord(id=task_id, agent=agent, agent_version="1", tenant=tenant, tags=tags or {}, created_at=at))
    for i, (kind, usd) in enumerate(steps):
        db.record_step({"task_id": task_id, "kind": kind, "status": status, "model": "m", "provider": "openai",
                        "input_tokens": 10, "output_tokens": 1, "created_at": at + i,
                        "cost_picos": None if usd is None else to_picos(D(usd))})
    db.finish_task(task_id, status="succeeded" if success else "failed", stop_reason=None, output="",
                   success=success)


@pytest.fixture
def month(ledger: Ledger) -> Ledger:
    task(ledger, "a1", "refund", [("plan", "0.01"), ("execute", "0.30"), ("tool", "0.02"), ("aggregate", "0.03")],
         tags={"team": "support"})
    task(ledger, "a2", "refund", [("execute", "0.10"), ("eval", "0.05")], tags={"team": "support"}, success=False)
    task(ledger, "b1", "research", [("plan", "0.02"), ("execute", "0.60"), ("summarise", "0.04"),
                                    ("execute", None)])
    task(ledger, "old", "research", [("execute", "9.00")], at=OCT)  # October's charge
    task(ledger, "other", "research", [("execute", "7.00")], tenant="globex")
    task(ledger, "refused", "refund", [("execute", "5.00")], status="refused", success=False)  # not charged
    return ledger


def test_separate_lines_add_up_to_every_charge_of_the_month(month: Ledger) -> None:
    with Reader(month) as reader:
        s = statement(reader, "2026-11", tenant="acme")
    lines = {line.name: line for line in s.lines}
    assert list(lines) == ["refund", "research", "shared: planning", "shared: summarising", "shared: evals",
                           "shared: aggregation"]
    refund, research = lines["refund"], lines["research"]
    assert (refund.tasks, refund.outcomes, refund.calls, refund.tool_calls) == (3, 1, 2, 1)
    assert refund.direct == D("0.42") and refund.cost_per_outcome == D("0.42")
    assert (research.direct, research.unpriced_calls, research.calls) == (D("0.6"), 1, 2)
    assert lines["shared: planning"].direct == D("0.03") and lines["shared: evals"].direct == D("0.05")
    assert s.total == D("1.17")  # every November charge of acme: nothing from October, globex or refusals


def test_allocated_shared_costs_follow_direct_cost_and_keep_the_total(month: Ledger) -> None:
    with Reader(month) as reader:
        apart = statement(reader, "2026-11", tenant="acme")
        shared = statement(reader, "2026-11", tenant="acme", shared="allocate")
    assert [line.name for line in shared.lines] == ["refund", "research"]
    refund, research = shared.lines
    # 0.15 of shared costs split 0.42 : 0.60, the last pico-dollar to the larger remainder
    assert refund.allocated + research.allocated == D("0.15")
    assert refund.allocated == D("0.061764705882") and research.allocated == D("0.088235294118")
    assert shared.total == apart.total
    assert refund.cost_per_outcome == (refund.total / 1).quantize(D("1e-12"))


def test_lines_by_tag_keep_untagged_tasks_on_a_line_of_their_own(month: Ledger) -> None:
    with Reader(month) as reader:
        s = statement(reader, "2026-11", by="tag:team", shared="allocate")
    assert [(line.name, line.tasks) for line in s.lines] == [("support", 2), ("(untagged)", 3)]
    assert s.total == D("8.17")  # globex's 7.00 counts: no tenant was asked for
    with Reader(month) as reader:
        only = statement(reader, "2026-11", tags={"team": "support"})
    assert [line.name for line in only.lines] == ["refund", "shared: planning", "shared: evals", "shared: aggregation"]


def test_month_bounds_are_utc_and_reject_other_shapes() -> None:
    start, end = month_bounds("2026-12")
    assert dt.datetime.fromtimestamp(start, dt.UTC) == dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    assert dt.datetime.fromtimestamp(end, dt.UTC) == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_bounds("November")


@given(st.integers(0, 10**15), st.lists(st.integers(0, 10**12), min_size=1, max_size=12).filter(lambda w: sum(w) > 0))
def test_allocation_is_exact_and_fair(total: int, weights: list[int]) -> None:
    parts = allocate(total, weights)
    assert sum(parts) == total
    whole = sum(weights)
    for part, w in zip(parts, weights, strict=True):
        assert abs(part * whole - total * w) < whole  # within one pico-dollar of the exact share


def test_statement_command_writes_csv_and_json(month: Ledger, ledger_path: Path) -> None:
    result = runner.invoke(app, ["statement", "-l", str(ledger_path), "--tenant", "acme", "--month", "2026-11",
                                 "--format", "csv", "--shared", "allocate"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [r["line"] for r in rows] == ["refund", "research", "total"]
    assert rows[-1]["total_usd"] == "1.17"
    result = runner.invoke(app, ["statement", "-l", str(ledger_path), "--tenant", "acme", "--month", "2026-11",
                                 "--format", "json"])
    data = json.loads(result.output)
    assert data["total_usd"] == "1.17" and data["shared_by_kind_usd"]["planning"] == "0.03"
    text = runner.invoke(app, ["statement", "-l", str(ledger_path), "--tenant", "acme", "--month", "2026-11"])
    assert text.exit_code == 0 and "shared: planning" in text.output and "$1.170000" in text.output


@pytest.mark.parametrize("args", [["--month", "11/2026"], ["--by", "team"], ["--shared", "split"],
                                  ["--tag", "team"], ["--format", "pdf"]])
def test_statement_bad_options_exit_2(month: Ledger, ledger_path: Path, args: list[str]) -> None:
    result = runner.invoke(app, ["statement", "-l", str(ledger_path), *args])
    assert result.exit_code == 2 and "error" in result.output
