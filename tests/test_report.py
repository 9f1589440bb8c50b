"""Ledger analytics and ``paymaster report``: exact numbers from a ledger of known tasks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from paymaster import Ledger
from paymaster._money import to_picos
from paymaster.cli._report import parse_when, report_command
from paymaster.ledger import TaskRecord
from paymaster.ledger._queries import (
    Scope,
    anomalies,
    cost_distribution,
    percentile,
    showback,
    summary,
    tag_keys,
    top_spenders,
)

pytestmark = pytest.mark.ledgers  # every ledger_path test runs on SQLite and PostgreSQL

D = Decimal
DAY1 = dt.datetime(2025, 3, 1, 12, tzinfo=dt.UTC).timestamp()
runner = CliRunner()


def add_task(
    db: Ledger, task_id: str, agent: str, usd: str | None, *, tenant: str = "acme", tags: dict[str, str] | None = None,
    success: bool = True, at: float = DAY1, cached_usd: str | None = None, finish: bool = True,
) -> None:
    """One task with one execute step costing ``usd`` (None: unpriced) and a baseline of twice that."""
    db.open_task(TaskRecord(id=task_id, agent=agent, agent_version="1", tenant=tenant, tags=tags or {}, created_at=at))
    cost = None if usd is None else to_picos(D(usd))
    db.record_step({"task_id": task_id, "kind": "execute", "cost_picos": cost,
                    "baseline_picos": None if cost is None else 2 * cost, "created_at": at})
    if cached_usd is not None:
        db.record_step({"task_id": task_id, "kind": "cache_hit", "cost_picos": 0, "baseline_picos": 0,
                        "saved_picos": to_picos(D(cached_usd)), "created_at": at})
    if finish:
        db.finish_task(task_id, status="succeeded" if success else "failed", stop_reason=None, output="ok",
                       success=success)


@pytest.fixture
def filled(ledger: Ledger) -> Iterator[Ledger]:
    # triage: six tasks, one planted at 2.00 (median 0.35, so 3x is 1.05); one failure.
    for i, usd in enumerate(["0.10", "0.20", "0.30", "0.40", "0.50", "2.00"]):
        add_task(ledger, f"t{i}", "triage", usd, tags={"team": "support"}, success=usd != "0.50")
    # research: only three tasks, so even a 10x one is not judged; one more with an unpriced call.
    add_task(ledger, "r0", "research", "1.00", tenant="globex", tags={"team": "science"}, cached_usd="0.05",
             at=DAY1 + 86_400)
    add_task(ledger, "r1", "research", "1.00", tenant="globex", tags={"team": "science", "env": "prod"},
             at=DAY1 + 86_400)
    add_task(ledger, "r2", "research", "10.00", tenant="globex", at=DAY1 + 86_400)
    add_task(ledger, "r3", "research", None, tenant="globex", tags={"team": "science"}, at=DAY1 + 86_400)
    add_task(ledger, "open", "research", "50.00", tenant="globex", finish=False)  # still running: not counted
    yield ledger


def test_percentile_is_nearest_rank() -> None:
    values = [D(n) for n in range(1, 11)]
    assert [percentile(values, p) for p in (1, 50, 90, 91, 99, 100)] == [D(1), D(5), D(9), D(10), D(10), D(10)]
    assert percentile([D(7)], 50) == D(7)
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summary_savings_and_cost_per_outcome(filled: Ledger) -> None:
    s = summary(filled)
    assert (s.tasks, s.succeeded, s.unpriced, s.priced_succeeded) == (10, 9, 1, 8)
    assert s.success_rate == 0.9
    assert s.cost == D("15.5") and s.baseline == D("31") and s.savings == D("15.5")
    assert s.cost_per_success == D("1.9375")  # everything spent, failures too, over 8 priced successes
    assert (s.cache_hits, s.cache_saved) == (1, D("0.05"))


def test_filters_narrow_every_query(filled: Ledger) -> None:
    assert summary(filled, Scope(tenant="acme")).cost == D("3.5")
    assert summary(filled, Scope(agent="research")).tasks == 4
    assert summary(filled, Scope(tags={"team": "science"})).tasks == 3
    assert summary(filled, Scope(tags={"team": "science", "env": "prod"})).cost == D("1")
    assert summary(filled, Scope(since=DAY1 + 3600)).tasks == 4
    assert summary(filled, Scope(until=DAY1 + 3600)).tasks == 6
    assert summary(filled, Scope(tenant="nobody")).cost_per_success is None


def test_cost_distribution_per_agent(filled: Ledger) -> None:
    research, triage = cost_distribution(filled)
    assert (triage.agent, triage.tasks, triage.unpriced) == ("triage", 6, 0)
    assert (triage.p50, triage.p90, triage.p99, triage.max) == (D("0.3"), D("2"), D("2"), D("2"))
    assert (research.agent, research.tasks, research.unpriced) == ("research", 4, 1)
    assert (research.p50, research.p90, research.max) == (D("1"), D("10"), D("10"))
    add_task(filled, "u", "unpriced-only", None)
    assert cost_distribution(filled)[-1].p50 is None  # unknown, not $0


def test_top_spenders_and_showback(filled: Ledger) -> None:
    assert [(s.key, s.cost) for s in top_spenders(filled, "tenant")] == [("globex", D("12")), ("acme", D("3.5"))]
    assert [(s.key, s.tasks, s.unpriced) for s in top_spenders(filled, "agent", limit=1)] == [("research", 4, 1)]
    assert [(s.key, s.cost) for s in top_spenders(filled, "tag:team")] == [("support", D("3.5")), ("science", D("2"))]
    shown = showback(filled, "team")
    assert [(s.key, s.tasks, s.cost) for s in shown] == [(None, 1, D("10")), ("support", 6, D("3.5")),
                                                         ("science", 3, D("2"))]
    assert sum(s.cost for s in shown) == summary(filled).cost
    assert tag_keys(filled) == ["env", "team"]
    with pytest.raises(ValueError, match="tag:KEY"):
        top_spenders(filled, "color")


def test_a_planted_task_is_an_anomaly_and_a_normal_one_is_not(filled: Ledger) -> None:
    found = anomalies(filled)
    assert [(a.task_id, a.cost, a.median) for a in found.tasks] == [("t5", D("2"), D("0.35"))]
    assert found.days == []  # two days of history is too little to judge a day


def test_a_day_over_mean_plus_two_sigma_of_the_last_30(ledger: Ledger) -> None:
    # 30 days alternating 1.00 / 1.20 (mean 1.10, sigma 0.10, threshold 1.30), then a 5.00 day.
    for i in range(30):
        add_task(ledger, f"d{i}", "daily", "1.00" if i % 2 == 0 else "1.20", at=DAY1 + i * 86_400)
    add_task(ledger, "spike", "daily", "5.00", at=DAY1 + 30 * 86_400)
    (day,) = anomalies(ledger).days
    assert day.day == dt.date(2025, 3, 31)
    assert (day.cost, day.mean, day.threshold) == (D("5"), D("1.1"), D("1.3"))
    # Judging only the last day still looks back past --since for its history.
    assert [d.day for d in anomalies(ledger, Scope(since=DAY1 + 30 * 86_400)).days] == [dt.date(2025, 3, 31)]
    assert [a.task_id for a in anomalies(ledger).tasks] == ["spike"]


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(report_command)
    return app


def test_report_command_prints_every_table(filled: Ledger, ledger_path: Path) -> None:
    result = runner.invoke(_app(), ["--ledger", str(ledger_path), "--by", "agent"])
    assert result.exit_code == 0, result.output
    out = result.output
    for text in ("Summary", "$15.50", "$31.00", "$1.9375", "90.0%", "Cost per task, by agent",
                 "Top spenders by agent", "Showback by tag 'team'", "(untagged)", "Showback by tag 'env'",
                 "Anomalous tasks", "t5", "1 tasks had a call of unknown price"):
        assert text in out, text
    narrowed = runner.invoke(_app(), ["-l", str(ledger_path), "--tenant", "acme", "--tag", "team=support"])
    assert narrowed.exit_code == 0 and "$3.50" in narrowed.output and "globex" not in narrowed.output


def test_report_on_an_empty_ledger_says_what_to_do(ledger: Ledger, ledger_path: Path) -> None:
    result = runner.invoke(_app(), ["--ledger", str(ledger_path)])
    assert result.exit_code == 0 and "paymaster demo" in result.output
    filtered = runner.invoke(_app(), ["--ledger", str(ledger_path), "--since", "7d"])
    assert filtered.exit_code == 0 and "match these filters" in filtered.output


@pytest.mark.parametrize("args", [["--since", "yesterday"], ["--tag", "team"], ["--by", "colour"]])
def test_bad_options_exit_2(ledger_path: Path, args: list[str]) -> None:
    result = runner.invoke(_app(), ["--ledger", str(ledger_path), *args])
    assert result.exit_code == 2
    assert "error" in result.output


def test_since_accepts_spans_and_iso_dates() -> None:
    assert parse_when("7d", now=1_000_000) == 1_000_000 - 7 * 86_400
    assert parse_when("24h", now=100_000) == 100_000 - 86_400
    assert parse_when("2025-03-01") == dt.datetime(2025, 3, 1, tzinfo=dt.UTC).timestamp()
