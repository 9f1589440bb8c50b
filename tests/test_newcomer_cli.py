"""The command line as a newcomer meets it: 80 columns, --version, help, mistyped paths, id prefixes."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from paymaster import Agent, ConfigurationError, Ledger, LedgerError, Runtime, ScriptedProvider, __version__
from paymaster.cli import app
from paymaster.cli._report import describe_window
from paymaster.cli._tables import task_detail, tasks_table, usd
from paymaster.ledger import TaskRecord
from paymaster.ledger._queries import Scope

runner = CliRunner()


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    result = runner.invoke(app, ["demo", "--ledger", str(path)])
    assert result.exit_code == 0, result.output
    yield path


def _render(renderable: object, width: int = 80) -> str:
    console = Console(record=True, width=width, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(renderable)
    console.file.close()
    return console.export_text()


def test_the_task_list_fits_80_columns_without_cutting_cells(demo_db: Path) -> None:
    tasks = Ledger(demo_db).tasks()
    text = _render(tasks_table(tasks))
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    for t in tasks:
        line = next(line for line in text.splitlines() if line.startswith(t.id))
        assert t.agent in line and t.status in line  # whole, on the task's own line
    assert "when (UTC)" in text


def test_the_wide_task_list_shows_tenant_tags_tokens_and_baseline(demo_db: Path) -> None:
    (task, *_) = Ledger(demo_db).tasks(agent="refund")
    text = _render(tasks_table([task], wide=True), width=150)
    assert "demo example=refund" in text and f"{task.input_tokens + task.output_tokens:,}" in text
    assert usd(Decimal(task.baseline_picos) / 10**12) in text


@pytest.mark.parametrize("agent", ["refund", "research-report", "deep-research", "document-analysis"])
def test_a_task_detail_fits_80_columns(demo_db: Path, agent: str) -> None:
    db = Ledger(demo_db)
    (task, *_) = db.tasks(agent=agent)
    text = _render(task_detail(task, db.steps(task.id)))
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    assert "UTC" in text


def test_the_cost_split_shows_tool_costs_on_their_own_line(demo_db: Path) -> None:
    db = Ledger(demo_db)
    (task, *_) = db.tasks(agent="refund")
    text = _render(task_detail(task, db.steps(task.id)))
    tools = next(line for line in text.splitlines() if line.startswith("(tools)"))
    paid = sum(s.cost_picos or 0 for s in db.steps(task.id) if s.kind == "tool")
    assert usd(Decimal(paid) / 10**12) in tools and paid > 0


def test_money_has_one_format() -> None:
    assert [usd(Decimal(x)) for x in ("0", "0.00044845", "0.0000099", "2.5", "1234.5")] == [
        "$0.000000", "$0.000448", "$0.000010", "$2.500000", "$1,234.500000",
    ]  # fmt: skip
    assert usd(Decimal("0.0000000001")) == "<$0.000001" and usd(None) == "unknown"


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"paymaster {__version__}"


@pytest.mark.parametrize("command", [["ledger"], ["ledger", "show"], ["report"], ["demo"]])
def test_help_shows_the_ledger_default(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert "(default: $PAYMASTER_LEDGER, else ./paymaster.db)" in result.output


@pytest.mark.parametrize("command", [["ledger"], ["ledger", "show", "abc"], ["report"]])
def test_read_only_commands_never_create_a_ledger(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "mistyped.db"
    result = runner.invoke(app, [*command, "--ledger", str(missing)], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert f"no ledger at {missing}: the file does not exist" in result.output
    assert not missing.exists()


@pytest.mark.parametrize("command", [["ledger"], ["demo"]])
def test_a_ledger_in_a_missing_directory_names_the_directory(tmp_path: Path, command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--ledger", str(tmp_path / "nope" / "x.db")], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert f"the directory {tmp_path / 'nope'} does not exist" in result.output


def test_a_file_that_is_not_a_ledger_says_so_in_one_line(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list\n")
    result = runner.invoke(app, ["ledger", "--ledger", str(notes)], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {notes} is not a Paymaster ledger: it is not a SQLite database"


def test_the_python_api_gives_the_same_reasons(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"the directory .* does not exist"):
        Ledger(tmp_path / "nope" / "x.db")
    (tmp_path / "notes.txt").write_text("shopping list\n")
    with pytest.raises(LedgerError, match="is not a Paymaster ledger"):
        Ledger(tmp_path / "notes.txt")


def test_an_ambiguous_id_prefix_lists_the_matches(tmp_path: Path) -> None:
    db = Ledger(tmp_path / "l.db")
    for task_id, agent in [("abc111", "refund"), ("abc222", "triage"), ("xyz333", "refund")]:
        db.open_task(TaskRecord(id=task_id, agent=agent, agent_version="1", tenant="acme", created_at=time.time()))
    result = runner.invoke(app, ["ledger", "show", "abc", "--ledger", str(tmp_path / "l.db")])
    assert result.exit_code == 1
    assert "'abc' is the start of 2 task ids" in result.output
    assert "abc111" in result.output and "abc222" in result.output and "xyz333" not in result.output
    shown = runner.invoke(app, ["ledger", "show", "abc2", "--ledger", str(tmp_path / "l.db")])
    assert shown.exit_code == 0 and "triage" in shown.output


class Planned(Agent):
    name = "planned"
    planner = "llm"


def test_ledger_show_prints_an_invalid_plans_raw_reply(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with Runtime(ledger=path, provider=ScriptedProvider(["not a plan at all", "still no plan {"])) as rt:
        outcome = rt.run_sync(Planned, "Research pricing models, compare them, then write a report.")
    assert outcome.status.value == "plan_invalid"
    result = runner.invoke(app, ["ledger", "show", outcome.task_id, "--ledger", str(path)])
    assert result.exit_code == 0
    assert "Plan: invalid" in result.output and "still no plan {" in result.output


def test_the_report_states_its_ledger_window_and_time_zone(demo_db: Path) -> None:
    result = runner.invoke(app, ["report", "--ledger", str(demo_db), "--since", "2026-01-01", "--tenant", "demo"])
    assert result.exit_code == 0, result.output
    assert f"Report on sqlite:///{demo_db}: finished tasks created since 2026-01-01 00:00 UTC, tenant demo" in (
        result.output.replace("\n", " ")
    )
    assert describe_window(Scope()) == "all finished tasks"


def test_the_demo_never_imports_torch(tmp_path: Path) -> None:
    # `pip install -e .` has no torch; the demo must not need it (nor the cache extra).
    code = (
        "import sys\n"
        "from paymaster.cli import app\n"
        "from typer.testing import CliRunner\n"
        f"result = CliRunner().invoke(app, ['demo', '--ledger', {str(tmp_path / 'd.db')!r}])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'faiss') if m in sys.modules))\n"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
