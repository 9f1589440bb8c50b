"""``paymaster reconcile``: the ledger against provider exports in their real formats (tests/data/bills/)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paymaster import Ledger
from paymaster._money import to_picos
from paymaster.cli import app
from paymaster.errors import ConfigurationError
from paymaster.ledger import TaskRecord
from paymaster.ledger._bills import load_bill, merge
from paymaster.ledger._reader import Reader
from paymaster.ledger._reconcile import reconcile

D = Decimal
BILLS = Path(__file__).parent / "data" / "bills"
NOV2 = dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC).timestamp()
NOV3 = NOV2 + 86_400
runner = CliRunner()


def call(db: Ledger, at: float, provider: str, model: str, usd: str | None, tokens_in: int, tokens_out: int,
         *, kind: str = "execute", status: str = "ok") -> None:
    db.record_step({"task_id": "t", "kind": kind, "status": status, "provider": provider, "model": model,
                    "input_tokens": tokens_in, "output_tokens": tokens_out, "created_at": at,
                    "cost_picos": None if usd is None else to_picos(D(usd))})


@pytest.fixture
def billed(ledger: Ledger) -> Ledger:
    ledger.open_task(TaskRecord(id="t", agent="a", agent_version="1", tenant="acme", created_at=NOV2))
    for _ in range(3):
        call(ledger, NOV2, "openai", "gpt-4o-mini-2024-07-18", "0.27", 1_000_000, 200_000)
    call(ledger, NOV2, "openai", "gpt-4o-2024-08-06", "0.35", 100_000, 10_000)
    call(ledger, NOV2, "openai", "o3-mini", "0.40", 10_000, 1_000)  # the provider did not bill it
    for _ in range(2):
        call(ledger, NOV3, "openai", "gpt-4o-mini-2024-07-18", "0.27", 1_000_000, 200_000)
    call(ledger, NOV3, "openai", "gpt-4o-mini-2024-07-18", "0.50", 0, 0, status="unsettled")  # worst case
    call(ledger, NOV3, "openai", "gpt-4o-mini-2024-07-18", "9.00", 0, 0, status="refused")  # never made
    call(ledger, NOV3, "tool", "lookup_order", "0.01", 0, 0, kind="tool")  # not a provider call
    call(ledger, NOV3, "cache", "gpt-4o-mini-2024-07-18", "0", 0, 0, kind="cache_hit")
    call(ledger, NOV2, "anthropic", "claude-sonnet-4-20250514", "4.50", 500_000, 200_000)
    call(ledger, dt.datetime(2026, 11, 1, 23, 59, tzinfo=dt.UTC).timestamp(), "openai", "gpt-4o-mini-2024-07-18",
         "7.00", 1, 1)  # the day before the export: outside the period compared
    return ledger


def rows_of(db: Ledger, *files: str, provider: str | None = None) -> dict[tuple[str, str], tuple[str, str]]:
    with Reader(db) as reader:
        found = reconcile(reader, merge(load_bill(BILLS / f) for f in files), provider=provider)
    return {(r.day.isoformat(), r.model): (r.status, r.note) for r in found.rows}


def test_openai_costs_and_usage_exports_against_the_ledger(billed: Ledger) -> None:
    assert rows_of(billed, "openai_costs.json", "openai_usage_completions.json") == {
        ("2026-11-02", "gpt-4o-2024-08-06"): ("match", ""),
        ("2026-11-02", "gpt-4o-mini-2024-07-18"): ("match", ""),
        ("2026-11-02", "o3-mini"): ("not billed", ""),
        ("2026-11-03", "gpt-4o-2024-08-06"): ("not in ledger", ""),
        ("2026-11-03", "gpt-4o-mini-2024-07-18"): ("differs", "1 ledger calls charged at worst case (unsettled)"),
    }


def test_figures_are_exact_and_the_export_period_bounds_the_ledger(billed: Ledger) -> None:
    with Reader(billed) as reader:
        found = reconcile(reader, load_bill(BILLS / "openai_costs.json"))
    assert (found.first_day, found.last_day) == (dt.date(2026, 11, 2), dt.date(2026, 11, 4))
    assert found.bill_total == D("2.90") and found.ledger_total == D("2.60")  # November 1st left out
    differs = next(r for r in found.rows if r.status == "differs")
    assert (differs.ledger_cost, differs.bill_cost, differs.difference) == (D("1.04"), D("0.54"), D("0.50"))


def test_anthropic_cost_and_usage_reports_against_the_ledger(billed: Ledger) -> None:
    assert rows_of(billed, "anthropic_cost_report.json", "anthropic_usage_report.json") == {
        ("2026-11-02", "claude-sonnet-4-20250514"): ("match", ""),  # $4.50 from cents; cache reads are input
        ("2026-11-02", "web_search"): ("not in ledger", ""),  # server-side tool use the ledger cannot see
    }


def test_a_usage_export_alone_compares_tokens(billed: Ledger) -> None:
    rows = rows_of(billed, "openai_usage_completions.json")
    assert rows[("2026-11-02", "gpt-4o-mini-2024-07-18")] == ("match", "")
    assert rows[("2026-11-03", "gpt-4o-mini-2024-07-18")][0] == "match"  # same tokens; no cost to compare
    assert rows[("2026-11-03", "gpt-4o-2024-08-06")][0] == "not in ledger"


def test_a_csv_bill_compares_every_provider(billed: Ledger) -> None:
    rows = rows_of(billed, "bill.csv")
    assert rows[("2026-11-02", "gpt-4o-mini-2024-07-18")] == ("match", "")
    assert rows[("2026-11-02", "claude-sonnet-4-20250514")] == ("differs", "")  # 4.50 recorded, 4.45 billed
    assert rows[("2026-11-02", "o3-mini")][0] == "not billed"


def test_an_export_without_models_is_compared_by_day(billed: Ledger, tmp_path: Path) -> None:
    page = {"object": "page", "has_more": False, "next_page": None, "data": [{
        "object": "bucket", "start_time": int(NOV2 - 9 * 3600), "end_time": int(NOV3 - 9 * 3600),
        "results": [{"object": "organization.costs.result", "amount": {"value": 1.56, "currency": "usd"},
                     "line_item": None, "project_id": None}]}]}
    (tmp_path / "costs.json").write_text(json.dumps(page))
    with Reader(billed) as reader:
        (row,) = reconcile(reader, load_bill(tmp_path / "costs.json")).rows
    assert (row.model, row.status, row.ledger_cost, row.bill_cost) == ("(all models)", "match", D("1.56"), D("1.56"))


def test_reconcile_command_exits_1_on_differences_and_writes_csv(billed: Ledger, ledger_path: Path) -> None:
    args = ["reconcile", str(BILLS / "openai_costs.json"), "-l", str(ledger_path)]
    text = runner.invoke(app, args)
    assert text.exit_code == 1, text.output
    assert "not in ledger" in text.output and "2 of 5 day-model rows match" in text.output
    out = runner.invoke(app, [*args, "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(out.output)))
    assert {r["status"] for r in rows} == {"match", "differs", "not in ledger", "not billed"}
    clean = runner.invoke(app, ["reconcile", str(BILLS / "anthropic_usage_report.json"), "-l", str(ledger_path)])
    assert clean.exit_code == 0, clean.output


@pytest.mark.parametrize(("content", "message"), [
    ("{\"data\": []}", "no usage buckets"),
    ("date,model\n2026-11-02,x\n", "needs the columns date, model and tokens and/or cost"),
    ("date,model,cost\nyesterday,x,1\n", "line 2"),
    ("not json at all {", "is not valid JSON"),
    ('{"data": [{"starting_at": "2026-11-02T00:00:00Z", "ending_at": "2026-11-03T00:00:00Z", '
     '"results": [{"amount": "1", "currency": "EUR"}]}]}', "only USD exports reconcile"),
])
def test_a_file_of_no_known_shape_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / ("bill.csv" if content.startswith("date") else "bill.json")
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=message):
        load_bill(path)


def test_exports_of_two_providers_are_refused_together() -> None:
    with pytest.raises(ConfigurationError, match="one provider at a time"):
        merge([load_bill(BILLS / "openai_costs.json"), load_bill(BILLS / "anthropic_cost_report.json")])
