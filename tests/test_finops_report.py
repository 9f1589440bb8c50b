"""``paymaster report`` and ``paymaster ledger`` as JSON and CSV; the one-pass report equals the single queries."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paymaster import Ledger
from paymaster.cli import app
from paymaster.ledger import resolve_url
from paymaster.ledger._queries import Scope, showback, summary, tag_keys, top_spenders
from paymaster.ledger._reader import OPEN_STATUSES, Reader, ledger_url
from paymaster.ledger._tables import TASK_STATUSES_OPEN
from paymaster.ledger._views import build_report
from tests.finops_helpers import DAY1, add_task

D = Decimal
runner = CliRunner()


@pytest.fixture
def fleet(ledger: Ledger) -> Ledger:
    # triage: 10 tasks at 0.10 and two planted at 1.00 and 2.00 (median 0.10: both are anomalies).
    for i in range(10):
        add_task(ledger, f"t{i:02d}", "triage", "0.10", tags={"team": "support", "env": "prod"})
    add_task(ledger, "big1", "triage", "1.00", tags={"env": "prod", "team": "support"})  # same tags, other order
    add_task(ledger, "big2", "triage", "2.00", tenant="globex", success=False)
    add_task(ledger, "r0", "research", "0.50", tenant="globex", tags={"team": "science"}, at=DAY1 + 86_400)
    add_task(ledger, "r1", "research", None, tenant="globex", tags={"team": "science"}, at=DAY1 + 86_460)
    return ledger


def _run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_the_one_pass_report_equals_the_single_queries(fleet: Ledger) -> None:
    for scope in (Scope(), Scope(tenant="globex"), Scope(tags={"team": "support"}), Scope(since=DAY1 + 3600)):
        report = build_report(fleet, scope, by="tag:team", limit=5)
        assert report.summary == summary(fleet, scope)
        assert report.top == top_spenders(fleet, "tag:team", 5, scope)
        assert report.showback == {k: showback(fleet, k, scope) for k in tag_keys(fleet, scope)}
    assert set(build_report(fleet).showback) == {"env", "team"}


def test_report_json_is_exact_and_lists_the_costliest_anomalies_first(fleet: Ledger, ledger_path: Path) -> None:
    data = json.loads(_run("report", "-l", str(ledger_path), "--format", "json", "--anomalies", "1"))
    assert data["summary"]["cost_usd"] == "4.5" and data["summary"]["baseline_usd"] == "9"
    assert data["summary"]["unpriced_tasks"] == 1 and data["summary"]["tasks"] == 14
    assert data["anomalies"]["tasks_total"] == 2
    assert [(a["task_id"], a["cost_usd"], a["agent_median_usd"]) for a in data["anomalies"]["tasks"]] == [
        ("big2", "2", "0.1")]
    team = {row["key"]: row["cost_usd"] for row in data["showback"]["team"]}
    assert team == {"support": "2", "science": "0.5", None: "2"}
    every = json.loads(_run("report", "-l", str(ledger_path), "--format", "json", "--anomalies", "0"))
    assert [a["task_id"] for a in every["anomalies"]["tasks"]] == ["big2", "big1"]


def test_report_csv_has_one_figure_a_row(fleet: Ledger, ledger_path: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(_run("report", "-l", str(ledger_path), "--format", "csv", "--by", "agent"))))
    figures = {(r["section"], r["key"], r["metric"]): r["value"] for r in rows}
    assert figures[("summary", "", "cost_usd")] == "4.5"
    assert figures[("cost_per_task", "triage", "p50_usd")] == "0.1"
    assert figures[("top_spenders:agent", "triage", "cost_usd")] == "4"
    assert figures[("showback:team", "(untagged)", "tasks")] == "1"
    assert figures[("anomalous_task", "big1", "cost_usd")] == "1"


def test_text_report_says_how_many_anomalies_it_left_out(fleet: Ledger, ledger_path: Path) -> None:
    out = _run("report", "-l", str(ledger_path), "--anomalies", "1")
    assert "the costliest 1 of 2" in out and "1 more anomalous tasks" in out
    assert "big2" in out and "big1" not in out


def test_ledger_lists_tasks_as_csv_and_json(fleet: Ledger, ledger_path: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(_run("ledger", "-l", str(ledger_path), "--format", "csv", "--limit", "3"))))
    assert [r["id"] for r in rows] == ["r1", "r0", "big2"]  # newest first
    assert rows[0]["cost_usd"] == "" and rows[0]["unpriced_calls"] == "1"  # unknown, not $0
    assert rows[1]["cost_usd"] == "0.5" and json.loads(rows[1]["tags"]) == {"team": "science"}
    data = json.loads(_run("ledger", "-l", str(ledger_path), "--format", "json", "--tenant", "acme"))
    assert len(data) == 11 and {t["tenant"] for t in data} == {"acme"}
    assert data[0]["created_at"].endswith("+00:00") and data[0]["success"] is True


@pytest.mark.parametrize("command", [["report"], ["ledger"]])
def test_an_unknown_format_exits_2(ledger_path: Path, command: list[str]) -> None:
    result = runner.invoke(app, [*command, "-l", str(ledger_path), "--format", "xml"])
    assert result.exit_code == 2 and "--format must be one of text, json, csv" in result.output


def test_the_reader_agrees_with_the_ledger_on_urls_and_open_statuses(tmp_path: Path) -> None:
    assert OPEN_STATUSES == TASK_STATUSES_OPEN
    for url in (None, "x.db", tmp_path / "y.db", "sqlite:///z.db", "postgresql://u@h/db"):
        assert ledger_url(url) == resolve_url(url)
    # A file that does not exist yet is created with the ledger's tables, like Ledger(...) does.
    with Reader(tmp_path / "new.db") as reader:
        assert reader.rows("SELECT COUNT(*) FROM tasks") == [(0,)]


def test_a_report_reads_one_state_of_the_ledger_while_tasks_keep_finishing(fleet: Ledger, ledger_path: Path) -> None:
    reader = Reader(ledger_path)
    first_query = reader.rows

    def then_a_task_finishes(sql: str, params: dict[str, object] | None = None) -> list[tuple[object, ...]]:
        rows = first_query(sql, params)
        if not hasattr(then_a_task_finishes, "done"):
            then_a_task_finishes.done = True  # type: ignore[attr-defined]
            add_task(fleet, "late", "triage", "50.00", tags={"team": "support"})  # another process, meanwhile
        return rows

    reader.rows = then_a_task_finishes  # type: ignore[method-assign]
    with reader:
        report = build_report(reader, anomaly_limit=None)
    # Every section is from before the late task: the totals, the percentiles and the anomalies agree.
    assert report.summary.tasks == 14 and report.summary.cost == D("4.5")
    assert max(d.max for d in report.distributions if d.max is not None) == D("2")
    assert "late" not in {a.task_id for a in report.anomalies.tasks}
    assert build_report(fleet).summary.tasks == 15  # and the next report sees it
