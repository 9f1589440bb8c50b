"""The CLI: the demo runs offline and the ledger commands show what it recorded."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from paymaster import Ledger
from paymaster.cli import app

runner = CliRunner()


def test_demo_then_ledger_list_and_show(tmp_path: Path) -> None:
    db = str(tmp_path / "demo.db")
    result = runner.invoke(app, ["demo", "--ledger", db])
    assert result.exit_code == 0, result.output
    assert "budget_exceeded" in result.output and "succeeded" in result.output

    tasks = Ledger(db).tasks()
    assert {t.agent for t in tasks} == {
        "summariser", "ticket-triage", "deep-research", "refund", "document-analysis", "research-report"
    }

    listed = runner.invoke(app, ["ledger", "--ledger", db])
    assert listed.exit_code == 0
    for task in tasks:
        assert task.id in listed.output

    refused = next(t for t in tasks if t.status == "budget_exceeded")
    shown = runner.invoke(app, ["ledger", "show", refused.id[:8], "--ledger", db])
    assert shown.exit_code == 0, shown.output
    assert "refused" in shown.output and "usd cap" in shown.output

    ok = next(t for t in tasks if t.agent == "ticket-triage")
    shown = runner.invoke(app, ["ledger", "show", ok.id, "--ledger", db])
    assert "gpt-4o-mini" in shown.output and "complexity=simple -> fast" in shown.output


def test_show_of_an_unknown_task_says_how_to_find_one(tmp_path: Path) -> None:
    Ledger(tmp_path / "x.db").close()
    result = runner.invoke(app, ["ledger", "show", "nope", "--ledger", str(tmp_path / "x.db")])
    assert result.exit_code == 1
    assert "no task 'nope'" in result.output and "paymaster ledger" in result.output


def test_empty_ledger_says_what_to_do(tmp_path: Path) -> None:
    Ledger(tmp_path / "x.db").close()
    result = runner.invoke(app, ["ledger", "--ledger", str(tmp_path / "x.db")])
    assert result.exit_code == 0 and "paymaster demo" in result.output
