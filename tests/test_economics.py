"""Unit economics and model-change surges: exact figures from a synthetic ledger of known tasks."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from paymaster import Ledger
from paymaster._money import to_picos
from paymaster.cli._report import report_command
from paymaster.ledger import TaskRecord
from paymaster.ledger._economics import (
    Change,
    model_changes,
    parse_human_cost,
    surges,
    unit_economics,
)
from paymaster.ledger._queries import Scope
from tests.finops_helpers import DAY1

D = Decimal
HOUR = 3600.0
runner = CliRunner()


def add_task(db: Ledger, task_id: str, agent: str, usd: str, *, at: float, model: str = "gpt-4o-mini",
             version: str = "1", success: bool = True, tier: str = "fast", tokens: tuple[int, int] = (900, 100),
             finish: bool = True) -> None:
    """One task served by ``model`` on ``tier`` at ``usd``, as agent version ``version``."""
    db.open_task(TaskRecord(id=task_id, agent=agent, agent_version=version, tenant="acme", created_at=at))
    db.record_step({"task_id": task_id, "kind": "execute", "cost_picos": to_picos(D(usd)), "provider": "openai",
                    "model": model, "tier": tier, "input_tokens": tokens[0], "output_tokens": tokens[1],
                    "baseline_picos": to_picos(D(usd)), "created_at": at + 1})
    if finish:
        db.finish_task(task_id, status="succeeded" if success else "failed", stop_reason=None, output="ok",
                       success=success)


@pytest.fixture
def tripled(ledger: Ledger) -> Ledger:
    """'triage' runs 6 tasks on gpt-4o-mini at $0.10, then its fast tier moves to gpt-4o at $0.30 (3x);
    'steady' runs 8 tasks at $0.05 through a version change that does not change its cost."""
    for i in range(6):
        add_task(ledger, f"a{i}", "triage", "0.10", at=DAY1 + i * HOUR)
    for i in range(6, 12):
        add_task(ledger, f"b{i}", "triage", "0.30", at=DAY1 + i * HOUR, model="gpt-4o")
    for i in range(8):
        add_task(ledger, f"s{i}", "steady", "0.05", at=DAY1 + i * HOUR, version="1" if i < 4 else "2")
    return ledger


def test_a_model_change_that_triples_cost_per_task_is_a_surge_naming_the_change(tripled: Ledger) -> None:
    (surge,) = surges(tripled)
    assert surge.agent == "triage"
    assert surge.changes == (Change("model on tier fast", "gpt-4o-mini", "gpt-4o"),)
    assert surge.describe() == "model on tier fast: gpt-4o-mini -> gpt-4o"
    assert (surge.at, surge.task_id) == (DAY1 + 6 * HOUR, "b6")  # dated by the first task on the new model
    assert (surge.tasks_before, surge.tasks_after) == (6, 6)
    assert (surge.before, surge.after, surge.ratio) == (D("0.1"), D("0.3"), D("3"))
    # The version change of 'steady' is found too, judged, and is no surge: its cost per task did not move.
    steady = [c for c in model_changes(tripled) if c.agent == "steady"]
    assert [(c.describe(), c.ratio, c.judged, c.surged) for c in steady] == [("version: 1 -> 2", D("1"), True, False)]


def test_surge_factor_and_minimum_tasks(tripled: Ledger) -> None:
    assert surges(tripled, factor=D("3")) == []  # 3x is not *over* 3x
    assert len(surges(tripled, factor=D("2.99"))) == 1
    # With only two tasks before the change, one cost per task says too little: judged no surge.
    few = Scope(since=DAY1 + 4 * HOUR, agent="triage")
    (change,) = model_changes(tripled, few)
    assert (change.tasks_before, change.judged, change.surged) == (2, False, False)
    with pytest.raises(ValueError, match="above zero"):
        surges(tripled, factor=D(0))


def test_a_one_off_fallback_model_and_changing_back_and_forth(ledger: Ledger) -> None:
    for i in range(8):  # one task in the middle served by another model: not a change
        add_task(ledger, f"t{i}", "triage", "0.10", at=DAY1 + i * HOUR, model="other" if i == 3 else "gpt-4o-mini")
    assert model_changes(ledger) == []
    for i in range(8, 12):  # then a real move to gpt-4o: named against the model it replaced, not the one-off
        add_task(ledger, f"t{i}", "triage", "0.10", at=DAY1 + i * HOUR, model="gpt-4o")
    (change,) = model_changes(ledger)
    assert change.describe() == "model on tier fast: gpt-4o-mini -> gpt-4o"
    assert (change.tasks_before, change.tasks_after, change.surged) == (8, 4, False)


def test_version_and_model_changed_by_the_same_task_are_one_change(ledger: Ledger) -> None:
    for i in range(4):
        add_task(ledger, f"a{i}", "writer", "0.20", at=DAY1 + i * HOUR)
    for i in range(4, 8):
        add_task(ledger, f"b{i}", "writer", "0.50", at=DAY1 + i * HOUR, model="gpt-4o", version="2")
    (surge,) = surges(ledger)
    assert surge.describe() == "model on tier fast: gpt-4o-mini -> gpt-4o; version: 1 -> 2"
    assert surge.ratio == D("2.5")


def test_unit_economics_per_agent(ledger: Ledger) -> None:
    # 'cheap': 4 tasks at $0.25, 3 succeed: $1 over 3 outcomes. 'dear': 2 tasks at $6, 1 succeeds: $12 an outcome.
    for i in range(4):
        add_task(ledger, f"c{i}", "cheap", "0.25", at=DAY1 + i, success=i != 0, tokens=(750, 250))
    for i in range(2):
        add_task(ledger, f"d{i}", "dear", "6.00", at=DAY1 + i, success=i == 0)
    add_task(ledger, "lost", "lost", "1.00", at=DAY1, success=False)
    add_task(ledger, "open", "cheap", "9.00", at=DAY1, finish=False)  # still running: not counted
    human = {"cheap": D("8.50"), "dear": D("8.50"), "lost": D("1")}
    cheap, dear, lost = unit_economics(ledger, human_costs=human)
    assert (cheap.agent, cheap.tasks, cheap.succeeded, cheap.cost) == ("cheap", 4, 3, D("1"))
    assert cheap.cost_per_success == D("0.333333333334")  # rounded up to the pico-dollar
    assert cheap.roi == D("24.5000")  # (8.50 - 0.333333333334) / 0.333333333334
    assert cheap.token_efficiency == D("0.25")  # 1,000 output tokens of 4,000
    assert not cheap.over_human_cost
    assert (dear.cost_per_success, dear.roi, dear.over_human_cost) == (D("12"), D("-0.2917"), True)
    assert (lost.cost_per_success, lost.roi, lost.over_human_cost) == (None, None, True)  # spent, never succeeded
    (unknown,) = unit_economics(ledger, Scope(agent="dear"))  # no human cost given: no ROI, no flag
    assert (unknown.human_cost, unknown.roi, unknown.over_human_cost) == (None, None, False)


@pytest.mark.parametrize("bad", ["-1", "eight", "NaN", "Infinity", 8.5, True])
def test_a_human_cost_must_be_a_non_negative_amount(bad: object) -> None:
    with pytest.raises(ValueError, match="human_cost_usd"):
        parse_human_cost(bad)


def test_human_cost_parses_exactly() -> None:
    assert parse_human_cost("8.50") == D("8.50")
    assert parse_human_cost(0) == D(0)
    assert parse_human_cost(None) is None


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(report_command)
    return app


def test_report_shows_surges_and_roi_per_agent(tripled: Ledger, ledger_path: Path) -> None:
    result = runner.invoke(_app(), ["-l", str(ledger_path), "--surges", "--human-cost", "triage=0.50",
                                    "--human-cost", "steady=0.01"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Surges" in out and "model on tier fast: gpt-4o-mini -> gpt-4o" in out and "3.00x" in out
    assert "Unit economics" in out
    # triage: $2.40 over 12 outcomes = $0.20 each, against $0.50: ROI 1.5. steady: $0.05 against $0.01: flagged.
    assert "150%" in out and "-80%" in out
    assert "Over the human cost per outcome: steady." in out
    data = json.loads(runner.invoke(_app(), ["-l", str(ledger_path), "-f", "json", "--surges", "--human-cost",
                                             "triage=0.50"]).output)
    triage = next(e for e in data["unit_economics"] if e["agent"] == "triage")
    assert (triage["cost_per_success_usd"], triage["roi"], triage["token_efficiency"]) == ("0.2", "1.5000", "0.1000")
    (surge,) = [c for c in data["model_changes"] if c["surge"]]
    assert (surge["agent"], surge["change"], surge["ratio"], surge["task_id"]) == (
        "triage", "model on tier fast: gpt-4o-mini -> gpt-4o", "3.0000", "b6")
    csv = runner.invoke(_app(), ["-l", str(ledger_path), "-f", "csv", "--surge-factor", "4"]).output
    assert "model_change,triage" in csv and "surge,False" in csv  # at 4x the tripling is no surge
    # An alert for cron or CI: the exit status says a surge was found.
    assert runner.invoke(_app(), ["-l", str(ledger_path), "-f", "json", "--fail-on-surge"]).exit_code == 1
    assert runner.invoke(_app(), ["-l", str(ledger_path), "--surge-factor", "4", "--fail-on-surge"]).exit_code == 0
    # Asked for only: the plain report reads no steps for surges and leaves both sections out.
    plain = json.loads(runner.invoke(_app(), ["-l", str(ledger_path), "-f", "json"]).output)
    assert (plain["unit_economics"], plain["model_changes"]) == (None, None)
    economics = json.loads(runner.invoke(_app(), ["-l", str(ledger_path), "-f", "json", "--economics"]).output)
    assert [e["roi"] for e in economics["unit_economics"]] == [None, None]  # no human cost given


def test_report_reads_human_costs_from_agent_classes(tripled: Ledger, ledger_path: Path, tmp_path: Path) -> None:
    agents = tmp_path / "agents.py"
    agents.write_text("from paymaster import Agent\n\nclass Triage(Agent):\n    name = 'triage'\n"
                      "    human_cost_usd = '0.50'\n", encoding="utf-8")
    data = json.loads(runner.invoke(_app(), ["-l", str(ledger_path), "-f", "json", "--agents", str(agents)]).output)
    assert {e["agent"]: e["roi"] for e in data["unit_economics"]} == {"steady": None, "triage": "1.5000"}
    # --human-cost wins over the class attribute.
    data = json.loads(runner.invoke(_app(), ["-l", str(ledger_path), "-f", "json", "--agents", str(agents),
                                             "--human-cost", "triage=0.20"]).output)
    assert next(e for e in data["unit_economics"] if e["agent"] == "triage")["roi"] == "0.0000"


@pytest.mark.parametrize("args", [["--human-cost", "triage"], ["--human-cost", "triage=-1"],
                                  ["--surge-factor", "0"], ["--surge-factor", "x"], ["--agents", "missing.py"]])
def test_report_refuses_bad_economics_options(tripled: Ledger, ledger_path: Path, args: list[str]) -> None:
    result = runner.invoke(_app(), ["-l", str(ledger_path), *args])
    assert result.exit_code == 2 and "error:" in result.output


def test_agent_human_cost_is_checked_when_the_class_is_defined() -> None:
    from paymaster import Agent
    from paymaster.errors import AgentDefinitionError

    class Priced(Agent):
        name = "priced"
        human_cost_usd = "8.50"

    assert Priced.human_cost_usd == "8.50"
    with pytest.raises(AgentDefinitionError, match="human_cost_usd must be a non-negative"):
        class Bad(Agent):
            name = "bad"
            human_cost_usd = "-3"


def test_html_report_shows_unit_economics_and_the_surge(tripled: Ledger, ledger_path: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    result = runner.invoke(_app(), ["-l", str(ledger_path), "--html", str(page), "--surges", "--human-cost",
                                    "triage=0.50"])
    assert result.exit_code == 0, result.output
    html = page.read_text(encoding="utf-8")
    assert "Unit economics, by agent" in html and "<td class='n'>150%</td>" in html
    assert "model on tier fast: gpt-4o-mini -&gt; gpt-4o" in html and "3.00x" in html


def test_surge_alerts_fire_once_per_change_when_tasks_finish(tripled: Ledger) -> None:
    from paymaster.executors import TaskView
    from paymaster.ledger import Totals
    from paymaster.telemetry import SurgeAlert, SurgeAlerts

    heard: list[SurgeAlert] = []
    watch = SurgeAlerts(tripled, refresh_seconds=0, listener=heard.append, clock=lambda: DAY1 + 12 * HOUR)
    try:
        view = TaskView(task_id="b11", agent="triage", agent_version="1", tenant="acme")
        watch.task_finished(view, "succeeded", None, Totals())  # starts a check of 'triage' on the worker thread
        assert watch._pending is not None
        watch._pending.result(timeout=30)
        watch.task_started(view)  # delivered on the event loop's next call
        (alert,) = heard
        assert alert.surge.describe() == "model on tier fast: gpt-4o-mini -> gpt-4o" and alert.surge.ratio == D(3)
        assert "agent 'triage': cost per task rose 3.00x" in alert.message and "task b6" in alert.message
        assert watch.check() == [] and watch.events == [alert]  # each change alerts once
    finally:
        watch.close()
    late = SurgeAlerts(tripled, window_seconds=HOUR, clock=lambda: DAY1 + 12 * HOUR)  # the change is out of the window
    try:
        assert late.check() == []
    finally:
        late.close()


def test_a_runtime_with_surge_alerts_catches_a_tier_moved_to_a_dearer_model(ledger_path: Path) -> None:
    from paymaster import Agent, ModelRequest, ModelResponse, Runtime, ScriptedProvider, Tier, Usage
    from paymaster.telemetry import SurgeAlerts

    class Writer(Agent):
        name = "writer"
        cacheable = False
        human_cost_usd = "5.00"

    def reply(request: ModelRequest) -> ModelResponse:
        return ModelResponse(text="done", usage=Usage(input_tokens=500, output_tokens=100), model=request.model,
                             finish_reason="stop")

    def tiers(model: str) -> list[Tier]:
        return [Tier(name="fast", provider="openai", model=model, max_tokens=200)]

    with Runtime(ledger=ledger_path, provider=ScriptedProvider(reply), tiers=tiers("gpt-4o-mini")) as rt:
        for i in range(4):
            rt.run_sync(Writer, f"Write note {i}.")
    with Runtime(ledger=ledger_path, provider=ScriptedProvider(reply), tiers=tiers("gpt-4o")) as rt:
        watch = SurgeAlerts(rt.ledger, refresh_seconds=0)
        rt.observers.append(watch)
        for i in range(4):
            rt.run_sync(Writer, f"Write note {i + 4}.")
        watch.close()  # a check may still be under way on the worker thread
        watch.check()  # and the last task's row is now certainly in the ledger
        (alert,) = watch.events
    assert alert.surge.agent == "writer"
    assert alert.surge.describe() == "model on tier fast: gpt-4o-mini -> gpt-4o"
    assert alert.surge.ratio is not None and alert.surge.ratio > 10  # gpt-4o's prices are ~16x gpt-4o-mini's
