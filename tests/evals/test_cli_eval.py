"""`paymaster eval`: a tiny golden set through the runtime, offline, with a temporary ledger."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from paymaster import Ledger
from paymaster.cli._eval import calibrate_command, eval_command
from paymaster.providers._replay import dump_recordings, load_recordings, tier_name
from paymaster.router import LengthScorerSpec, Thresholds, load_thresholds, save_thresholds

from .helpers import synthetic

runner = CliRunner()
app = typer.Typer()
app.command("eval")(eval_command)


@app.callback()
def _root() -> None:
    """Keeps `eval` a subcommand, as in the real CLI."""


AGENT = '''
from paymaster import Agent, Budget, Complexity

class Triage(Agent):
    name = "triage"
    instructions = "Answer with one word."
    complexity = Complexity.SIMPLE
    budget = Budget(usd="0.01")

def REPLY(request):
    return request.messages[-1].content.split(":")[0]
'''


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "agent.py").write_text(AGENT)
    golden = tmp_path / "golden.jsonl"
    golden.write_text("\n".join(json.dumps(x) for x in [
        {"id": "a", "input": "billing: charged twice", "expected": "billing", "task_type": "billing"},
        {"id": "b", "input": "bug: export fails", "expected": "bug", "task_type": "bug"},
        {"id": "c", "input": "account: locked out", "expected": "billing", "task_type": "account"},
    ]) + "\n")
    return {"agent": tmp_path / "agent.py", "golden": golden, "ledger": tmp_path / "ledger.db", "dir": tmp_path}


def test_eval_runs_scores_and_reports_offline(files: dict[str, Path]) -> None:
    out = files["dir"] / "report.json"
    result = runner.invoke(app, ["eval", str(files["golden"]), "--agent", f"{files['agent']}:Triage",
                                 "--ledger", str(files["ledger"]), "--json", str(out)])
    assert result.exit_code == 0, result.output
    for text in ("accuracy", "66.7%", "cost per successful outcome", "Tier split", "Model selection", "Failures",
                 "expected 'billing'", "scripted provider stands in"):
        assert text in result.output
    report = json.loads(out.read_text())
    assert report["summary"]["items"] == 3 and report["summary"]["correct"] == 2
    assert [i["tier"] for i in report["items"]] == ["fast", "fast", "fast"]
    db = Ledger(files["ledger"])  # every item is a real task in the ledger
    try:
        assert len(db.tasks(tenant="eval")) == 3
    finally:
        db.close()
    total = sum((Decimal(i["cost_usd"]) for i in report["items"]), Decimal(0))
    assert Decimal(report["summary"]["cost_usd"]) == total > 0


def test_same_inputs_same_numbers(files: dict[str, Path]) -> None:
    reports = []
    for run in ("1", "2"):
        out = files["dir"] / f"r{run}.json"
        result = runner.invoke(app, ["eval", str(files["golden"]), "-a", f"{files['agent']}:Triage",
                                     "--ledger", str(files["dir"] / f"l{run}.db"), "--json", str(out)])
        assert result.exit_code == 0, result.output
        data = json.loads(out.read_text())
        for item in data["items"]:
            del item["task_id"]  # task ids are fresh per run; nothing else may differ
        reports.append(data)
    assert reports[0] == reports[1]


def test_a_module_agent_and_a_limit(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(files["dir"]))
    result = runner.invoke(app, ["eval", str(files["golden"]), "--agent", "agent:Triage", "--limit", "1",
                                 "--ledger", str(files["ledger"])])
    assert result.exit_code == 0, result.output
    assert "100.0%" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--agent", "nocolon"], "--agent must be"),
        (["--agent", "missing.py:X"], "does not exist"),
        (["--agent", "AGENT_FILE:Nope"], "no Agent subclass named 'Nope'"),
        (["--agent", "no_such_module_abc:X"], "cannot import"),
        (["--agent", "AGENT_FILE:Triage", "--provider", "openai"], "--provider must be"),
        (["--agent", "AGENT_FILE:Triage", "--provider", "replay"], "needs --replay"),
    ],
)
def test_usage_mistakes_exit_2_with_a_clear_message(files: dict[str, Path], args: list[str], message: str) -> None:
    args = [a.replace("AGENT_FILE", str(files["agent"])) for a in args]
    result = runner.invoke(app, ["eval", str(files["golden"]), *args, "--ledger", str(files["ledger"])])
    assert result.exit_code == 2
    assert message in result.output


def test_a_bad_golden_line_exits_2_naming_the_line(files: dict[str, Path]) -> None:
    files["golden"].write_text('{"input": "ok", "expected": "x"}\n{"input": 3}\n')
    result = runner.invoke(app, ["eval", str(files["golden"]), "--agent", f"{files['agent']}:Triage",
                                 "--ledger", str(files["ledger"])])
    assert result.exit_code == 2
    assert "golden.jsonl:2: 'input' is required" in result.output.replace("\n", "")


def test_replay_with_a_score_router_uses_recorded_verdicts_and_costs(files: dict[str, Path]) -> None:
    records = synthetic(12)
    replay_file = files["dir"] / "replay.jsonl"
    dump_recordings(records, replay_file)
    golden = files["dir"] / "replayed.jsonl"
    golden.write_text("".join(json.dumps({"id": r.id, "input": r.prompt, "scorer": "recorded",
                                          "task_type": r.task_type}) + "\n" for r in records))
    thresholds = save_thresholds(
        Thresholds(scorer=LengthScorerSpec(scale_words=10), tiers=(tier_name("small"), tier_name("large")),
                   thresholds=(0.5,)),
        files["dir"] / "thresholds.json",
    )
    out = files["dir"] / "report.json"
    (files["dir"] / "plain.py").write_text("from paymaster import Agent\nclass Plain(Agent):\n    name = 'plain'\n")
    result = runner.invoke(app, ["eval", str(golden), "--agent", f"{files['dir'] / 'plain.py'}:Plain",
                                 "--replay", str(replay_file), "--router", str(thresholds),
                                 "--ledger", str(files["ledger"]), "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    for item, record in zip(report["items"], records, strict=True):
        # Short (easy) prompts score < 0.5 and stay on small; long (hard) ones go to large.
        want = "large" if record.task_type == "hard" else "small"
        assert item["tier"] == want
        assert item["correct"] is record.outcomes[want].correct
        assert Decimal(item["cost_usd"]) == record.outcomes[want].cost_usd  # the ledger charged the recording
    assert report["summary"]["accuracy"] == 1.0


calibrate_app = typer.Typer()
calibrate_app.command("eval")(eval_command)
calibrate_app.command("calibrate")(calibrate_command)


def test_record_every_tier_then_calibrate_then_route(files: dict[str, Path]) -> None:
    pytest.importorskip("numpy", reason="calibration needs the evals extra")
    recorded = files["dir"] / "tiers.jsonl"
    args = ["eval", str(files["golden"]), "--agent", f"{files['agent']}:Triage", "--ledger", str(files["ledger"])]
    # The agent's $0.01 cap refuses the worst case of "balanced" and "deep": they record $0 and no answer.
    result = runner.invoke(calibrate_app, [*args, "--record", str(recorded)])
    assert result.exit_code == 0, result.output
    assert "Every item on every tier (3 items)" in result.output
    flat = " ".join(result.output.split())
    assert "tier 'deep': 3 of 3 items stopped at a budget cap" in flat and "--budget-usd" in flat
    recordings = load_recordings(recorded)
    assert [sorted(r.outcomes) for r in recordings] == [["balanced", "deep", "fast"]] * 3
    assert recordings[0].outcomes["fast"].correct is True  # the scripted reply is the label before ':'
    # Calibration does not mistake the capped tiers for the cheapest: it leaves them out and says so.
    capped = runner.invoke(calibrate_app, ["calibrate", str(recorded), "--out", str(files["dir"] / "x.json")])
    assert capped.exit_code == 2
    said = " ".join(capped.output.split())
    assert "tier 'balanced' left out" in said and "tier 'deep' left out" in said

    result = runner.invoke(calibrate_app, [*args, "--record", str(recorded), "--budget-usd", "1"])
    assert result.exit_code == 0 and "stopped at a budget cap" not in result.output, result.output
    for scorer in ("length", "knn"):
        out = files["dir"] / f"{scorer}.json"
        result = runner.invoke(calibrate_app, ["calibrate", str(recorded), "--out", str(out), "--scorer", scorer])
        assert result.exit_code == 0, result.output
        assert "score router" in result.output and "Thresholds written" in result.output
        thresholds = load_thresholds(out)
        assert thresholds.objective["kind"] == "quality" and thresholds.objective["delta"] == "0.1"
        # Three items certify nothing cheaper than the reference: the file routes everything to it.
        # The certificate is in the file beside the estimate; a fallback routes everything to the reference.
        assert float(thresholds.train["accuracy_share_lower_bound"]) <= float(thresholds.train["accuracy_share"])
        if thresholds.train["fallback_to_reference"]:
            assert thresholds.tiers == (thresholds.objective["reference"],)
        assert thresholds.prices["fast"]["model"] == "gpt-4o-mini"
        routed = runner.invoke(calibrate_app, [*args, "--router", str(out)])
        assert routed.exit_code == 0, routed.output
    for kind in ("utility", "cascade"):
        out = files["dir"] / f"{kind}.json"
        result = runner.invoke(calibrate_app, ["calibrate", str(recorded), "--out", str(out), "--router", kind])
        assert result.exit_code == 0, result.output
        assert "Policy written" in result.output and json.loads(out.read_text())["kind"] == kind
        routed = runner.invoke(calibrate_app, [*args, "--router", str(out)])
        assert routed.exit_code == 0, routed.output
    point = files["dir"] / "point.json"
    result = runner.invoke(calibrate_app, ["calibrate", str(recorded), "--out", str(point), "--delta", "0",
                                           "--scorer", "length"])
    assert result.exit_code == 0, result.output
    assert load_thresholds(point).tiers == ("fast", "balanced", "deep")  # by list price, cheapest first

    bad = runner.invoke(calibrate_app, ["calibrate", str(recorded), "--target", "lots"])
    assert bad.exit_code == 2 and "--target must be a number" in bad.output
