"""Policies as code: the TOML config's [agents.*] and [tools.*] tables, checked at load, versioned on each task."""

from __future__ import annotations

import re
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from paymaster import (
    Agent,
    Budget,
    ConfigurationError,
    Ledger,
    ModelResponse,
    Rate,
    Runtime,
    ScriptedProvider,
    TaskStatus,
    Usage,
    tool,
)
from paymaster.providers import ToolCall

USAGE = Usage(input_tokens=20, output_tokens=5)
CALLED: list[str] = []


@tool(price_usd="0.10")
def market_data(symbol: str) -> str:
    """Premium market data for a symbol."""
    CALLED.append(symbol)
    return f"{symbol}: 101.5"


class Trader(Agent):
    name = "trader"
    budget = Budget(usd="10")
    tools = [market_data]  # noqa: RUF012


POLICY = """
policy_version = "2026-11-30.1"

[agents.trader]
budget = {usd = "0.50", steps = 4}
role = "intern"
human_cost_usd = "8.50"
rate = {calls_per_minute = 30}

[tools.market_data]
roles = ["analyst"]
"""


def _asks_for_market_data() -> ScriptedProvider:
    ask = ModelResponse(text="", usage=USAGE, model="gpt-4o-mini",
                        tool_calls=(ToolCall(id="c1", name="market_data", arguments={"symbol": "ACME"}),))
    return ScriptedProvider([ask, "done"], usage=USAGE)


def test_the_config_sets_agent_and_tool_policies_and_each_task_records_its_version(tmp_path: Path) -> None:
    config = tmp_path / "paymaster.toml"
    config.write_text(POLICY)
    CALLED.clear()
    with Runtime(ledger=tmp_path / "l.db", provider=_asks_for_market_data(), config=config,
                 agents=[Trader]) as rt:
        outcome = rt.run_sync(Trader, "Price ACME.")
        task = rt.ledger.task(outcome.task_id)
        steps = rt.ledger.steps(outcome.task_id)
        rules = rt.rates.rules["agent:trader"]
    assert outcome.status is TaskStatus.SUCCEEDED
    assert task is not None and task.policy_version == "2026-11-30.1"
    assert task.budget == {"usd": "0.50", "steps": 4}  # the file's budget, not the class's $10
    # The file made the tool analysts-only and the agent an intern: the tool was never called.
    assert CALLED == []
    (refused,) = [s for s in steps if s.kind == "tool"]
    assert refused.status == "refused" and refused.error is not None and "role ['analyst']" in refused.error
    assert [r.limit for r in rules] == [30]
    assert Trader.budget == Budget(usd="10") and Trader.role is None  # the class itself is untouched
    # `paymaster ledger show` names the policy version the task ran under.
    from typer.testing import CliRunner

    from paymaster.cli import app

    shown = CliRunner().invoke(app, ["ledger", "show", outcome.task_id, "--ledger", str(tmp_path / "l.db")])
    assert shown.exit_code == 0, shown.output
    assert re.search(r"policy\s+2026-11-30\.1", shown.output)


def test_without_a_config_tasks_record_no_policy_version(tmp_path: Path) -> None:
    with Runtime(ledger=tmp_path / "l.db", provider=ScriptedProvider(usage=USAGE)) as rt:
        outcome = rt.run_sync(Trader, "hello")
        task = rt.ledger.task(outcome.task_id)
    assert task is not None and task.policy_version is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[agents.trader]\nrate = {calls_per_minute = -5}\n',
         r"agents.trader: Rate\(calls_per_minute=...\): Input should be greater than 0, got -5"),
        ('[agents.trader]\nbudgett = {usd = "1"}\n', r"agents.trader: unknown setting\(s\) \['budgett'\]"),
        ('[agents.trader]\nroutes = {complex = "frontier"}\n',
         r"routes.complex names unknown tier 'frontier'; the tiers are \['fast', 'balanced', 'deep'\]"),
        ('[agents.trader]\nhuman_cost_usd = "-3"\n', "human_cost_usd must be a non-negative dollar amount"),
        ('[tools.market_data]\napprove_after_calls = -1\n', "tools.market_data: approve_after_calls must be"),
        ('[tools.market_data]\nroles = "analyst"\n', "roles must be a list of role names"),
        ('policy_version = ""\n', "policy_version must be a string"),
        ('[agents.tradr]\nrole = "analyst"\n', r"\[agents.tradr\] names no agent; the agents are \['trader'\]"),
        ('[tools.market_dta]\nroles = ["analyst"]\n',
         r"\[tools.market_dta\] names no tool of these agents; the tools are \['market_data'\]"),
    ],
)
def test_a_bad_policy_file_is_refused_at_load_naming_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "paymaster.toml"
    config.write_text(text)
    with pytest.raises(ConfigurationError, match=message):
        Runtime(ledger=tmp_path / "l.db", provider=ScriptedProvider(), config=config, agents=[Trader])


def test_a_ledger_from_before_policy_versions_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    Ledger(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE tasks DROP COLUMN policy_version")  # as an older Paymaster wrote it
    config = tmp_path / "paymaster.toml"
    config.write_text('policy_version = "7"\n')
    with Runtime(ledger=path, provider=ScriptedProvider(usage=USAGE), config=config) as rt:
        task = rt.ledger.task(rt.run_sync(Trader, "hello").task_id)
    assert task is not None and task.policy_version == "7"


def test_an_agent_rate_in_code_still_applies_when_the_file_sets_other_things(tmp_path: Path) -> None:
    class Paced(Agent):
        name = "paced"
        rate = Rate(calls_per_minute=12)

    config = tmp_path / "paymaster.toml"
    config.write_text('[agents.paced]\nhuman_cost_usd = "2"\n')
    with Runtime(ledger=tmp_path / "l.db", provider=ScriptedProvider(usage=USAGE), config=config) as rt:
        rt.run_sync(Paced, "hello")
        assert [r.limit for r in rt.rates.rules["agent:paced"]] == [12]


def test_the_readme_policies_snippet_runs_as_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:

    from readme_snippets import run_block

    run_block("Policies as code", tmp_path, monkeypatch)
    assert capsys.readouterr().out == "succeeded 2026-11-30.1\n"
    text = (tmp_path / "paymaster.toml").read_text()
    for wrong, bad, message in [
        ("calls_per_minute = 60", "calls_per_minute = -5", "Input should be greater than 0, got -5"),
        ("[tools.market_data]", "[tools.market_dta]", "names no tool of these agents"),
        ('role = "analyst"', 'routes = {complex = "frontier"}', "unknown tier 'frontier'"),
    ]:
        (tmp_path / "bad.toml").write_text(text.replace(wrong, bad, 1))
        with pytest.raises(ConfigurationError, match=re.escape(message)):
            Runtime(ledger=tmp_path / "l.db", provider=ScriptedProvider(), config=tmp_path / "bad.toml",
                    agents=[Trader])


def test_the_examples_declare_policies_and_report_shows_roi_per_agent_unasked(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from paymaster._files import load_module
    from paymaster.cli import app

    examples = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))
    agents = [load_module(f, prefix="policy_example").AGENT for f in examples]
    assert all(a.rate is not None and a.human_cost_usd is not None for a in agents)
    runner = CliRunner()
    db = str(tmp_path / "demo.db")
    assert runner.invoke(app, ["demo", "--ledger", db]).exit_code == 0
    shown = runner.invoke(app, ["report", "--ledger", db, "--format", "json"])  # no --agents, no --human-cost
    assert shown.exit_code == 0, shown.output
    economics = {e["agent"]: e for e in json.loads(shown.output)["unit_economics"]}
    assert {a.name: Decimal(economics[a.name]["human_cost_usd"]) for a in agents} == {
        a.name: Decimal(a.human_cost_usd) for a in agents  # type: ignore[arg-type]
    }
    refund = economics["refund"]
    assert refund["succeeded"] == 2 and refund["roi"] is not None and Decimal(refund["roi"]) > 0
    # A figure given at report time wins over the recorded one.
    shown = runner.invoke(app, ["report", "--ledger", db, "--format", "json", "--human-cost", "refund=0.001"])
    refund = {e["agent"]: e for e in json.loads(shown.output)["unit_economics"]}["refund"]
    assert Decimal(refund["human_cost_usd"]) == Decimal("0.001") and refund["over_human_cost"] is True
