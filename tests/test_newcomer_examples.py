"""Every example runs alone, offline, and says something; the examples' golden sets score sensibly offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paymaster.cli import app

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))

# What each example's run must print offline: its tasks' statuses and a phrase of its answer.
EXPECTED = {
    "deep_research": ["budget_exceeded", "usd cap"],
    "document_analysis": ["succeeded", "Risk:"],
    "refund": ["succeeded", "Refund approved for order 1234", "Refund declined for order 5678"],
    "research_report": ["succeeded", "Recommendation:"],
    "summariser": ["succeeded", "18% to 42,000 tickets"],
    "ticket_triage": ["succeeded", "'billing'", "'bug'"],
}


def test_every_example_is_covered() -> None:
    assert {p.stem for p in EXAMPLES} == set(EXPECTED)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_an_example_runs_alone_offline_and_prints_its_outcome(example: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "PAYMASTER_LEDGER"}
    env["PYTHONPATH"] = str(ROOT)
    run = subprocess.run(
        [sys.executable, str(example)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    for text in EXPECTED[example.stem]:
        assert text in run.stdout, (text, run.stdout)
    assert "plan_invalid" not in run.stdout and "failed" not in run.stdout
    assert (tmp_path / "paymaster.db").exists()  # the tasks are in the ledger for `paymaster ledger`


@pytest.mark.parametrize(
    ("golden", "agent", "at_least"),
    [("ticket_triage", "TicketTriage", 0.9), ("summariser", "Summariser", 0.8)],
)
def test_an_examples_golden_set_scores_sensibly_offline(
    tmp_path: Path, golden: str, agent: str, at_least: float
) -> None:
    out = tmp_path / "out.json"
    result = CliRunner().invoke(app, [
        "eval", str(ROOT / "evals" / "golden" / f"{golden}.jsonl"),
        "--agent", f"{ROOT / 'examples' / golden}.py:{agent}",
        "--ledger", str(tmp_path / "eval.db"), "--json", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    # The scripted stand-in, not a model, answers: this checks the agent, its REPLY and the set fit together.
    assert report["summary"]["accuracy"] >= at_least, report["items"]
