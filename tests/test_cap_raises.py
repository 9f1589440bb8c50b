"""A surge may raise an agent's task caps by a bounded factor for a bounded time: a ledger event the report shows."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paymaster import Agent, Budget, ConfigurationError, Ledger, Runtime, ScriptedProvider, Usage
from paymaster._money import to_picos
from paymaster.cli import app
from paymaster.ledger import TaskRecord
from paymaster.ledger._raises import cap_raises
from paymaster.telemetry import RaiseCaps, SurgeAlerts

pytestmark = pytest.mark.ledgers
DAY1 = 1_767_225_600.0  # 2026-01-01 00:00 UTC
HOUR = 3600.0


class Triage(Agent):
    name = "triage"
    budget = Budget(usd="0.50", steps=5, tokens=3_000)


def _tripled(db: Ledger) -> None:
    """'triage' runs 6 tasks at $0.10 on gpt-4o-mini, then 6 at $0.30 once its tier serves gpt-4o (3x)."""
    for i in range(12):
        at, model, usd = DAY1 + i * HOUR, "gpt-4o-mini" if i < 6 else "gpt-4o", "0.10" if i < 6 else "0.30"
        db.open_task(TaskRecord(id=f"t{i}", agent="triage", agent_version="1", tenant="acme", created_at=at))
        db.record_step({"task_id": f"t{i}", "kind": "execute", "cost_picos": to_picos(Decimal(usd)),
                        "provider": "openai", "model": model, "tier": "fast", "created_at": at + 1})
        db.finish_task(f"t{i}", status="succeeded", stop_reason=None, output="ok", success=True)


def test_a_surge_raises_the_agents_caps_boundedly_for_a_while_and_the_report_shows_it(
    ledger_path: Path, tmp_path: Path
) -> None:
    now = DAY1 + 12 * HOUR
    db = Ledger(ledger_path)
    _tripled(db)
    watch = SurgeAlerts(db, clock=lambda: now, raise_caps=RaiseCaps(factor="2", seconds=2 * HOUR))
    try:
        (alert,) = watch.check()
    finally:
        watch.close()
        db.close()
    # The surge was 3x; the raise is bounded by the configured 2x, for two hours from the alert.
    assert alert.raised is not None
    assert (alert.raised.agent, alert.raised.factor, alert.raised.ends_at - alert.raised.starts_at) == (
        "triage", Decimal(2), 2 * HOUR)
    assert "gpt-4o-mini -> gpt-4o" in alert.raised.reason
    with Runtime(ledger=ledger_path, provider=ScriptedProvider(usage=Usage(input_tokens=10, output_tokens=5))) as rt:
        rt.raised.clock = lambda: now + HOUR  # within the raise
        during = rt.ledger.task(rt.run_sync(Triage, "ticket").task_id)
        rt.raised._next = float("-inf")
        rt.raised.clock = lambda: now + 3 * HOUR  # the raise has ended by itself
        after = rt.ledger.task(rt.run_sync(Triage, "ticket").task_id)
        (recorded,) = cap_raises(rt.ledger)
    assert during is not None and during.budget == {"usd": "1.00", "steps": 10, "tokens": 6000}
    assert after is not None and after.budget == {"usd": "0.50", "steps": 5, "tokens": 3000}
    assert recorded == alert.raised
    runner = CliRunner()
    text = runner.invoke(app, ["report", "--ledger", str(ledger_path)], terminal_width=200)
    assert text.exit_code == 0, text.output
    assert "Temporary cap raises" in text.output and "2x" in text.output
    data = json.loads(runner.invoke(app, ["report", "--ledger", str(ledger_path), "--format", "json"]).output)
    (shown,) = data["cap_raises"]
    assert (shown["agent"], shown["factor"]) == ("triage", "2")
    assert shown["from"] == "2026-01-01T12:00:00+00:00" and shown["until"] == "2026-01-01T14:00:00+00:00"
    page = tmp_path / "report.html"  # the HTML report lists it too
    assert runner.invoke(app, ["report", "--ledger", str(ledger_path), "--html", str(page)]).exit_code == 0
    html = page.read_text(encoding="utf-8")
    assert "Temporary cap raises" in html and "<td class='n'>2x</td>" in html and "2026-01-01 14:00" in html


def test_no_raise_without_raise_caps(ledger: Ledger) -> None:
    _tripled(ledger)
    watch = SurgeAlerts(ledger, clock=lambda: DAY1 + 12 * HOUR)
    try:
        (alert,) = watch.check()
    finally:
        watch.close()
    assert alert.raised is None and cap_raises(ledger) == []


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RaiseCaps(factor="5"), "above 1 and at most 3"),
        (lambda: RaiseCaps(factor="1"), "above 1 and at most 3"),
        (lambda: RaiseCaps(factor="lots"), "above 1 and at most 3"),
        (lambda: RaiseCaps(seconds=2 * 86_400), r"at most 86400 \(a day\)"),
    ],
)
def test_a_raise_is_bounded(make: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make()  # type: ignore[operator]
