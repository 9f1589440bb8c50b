"""The README's examples do what their comments say: the TOML config and the plans-and-tools snippet."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path

import pytest
from readme_snippets import block as _block
from readme_snippets import run_block
from sqlmodel import col, select

from paymaster import Agent, Complexity, ConfigurationError, Runtime, ScriptedProvider, TaskStatus
from paymaster.ledger import AccountRecord


class Quick(Agent):
    name = "quick"
    complexity = Complexity.SIMPLE


class Hard(Agent):
    name = "hard"
    complexity = Complexity.COMPLEX


def test_the_toml_example_is_valid_and_configures_what_its_comments_say(tmp_path: Path) -> None:
    text = _block("Tiers, routes and prices", "toml")
    data = tomllib.loads(text)  # valid TOML as printed
    assert list(data["tiers"]) == ["local", "fast", "deep"]
    config = tmp_path / "paymaster.toml"
    config.write_text(text, encoding="utf-8")
    # filterwarnings = error: a tier table out of price order or a free baseline would fail here.
    with Runtime(ledger=tmp_path / "l.db", config=config, provider=ScriptedProvider()) as rt:
        assert [t.name for t in rt.tiers] == ["local", "fast", "deep"]
        assert rt.tiers.deepest.name == "deep"  # the baseline is the last, most capable tier
        assert {c.value: name for c, name in rt.tiers.routes.items()} == {
            "simple": "local", "moderate": "fast", "complex": "deep",
        }  # fmt: skip
        simple = rt.run_sync(Quick, "Is this spam?", tenant="acme", tags={"team": "support"})
        complex_ = rt.run_sync(Hard, "Plan the migration.", tenant="acme", tags={"team": "support"})
        (simple_step,) = rt.ledger.steps(simple.task_id)
        (complex_step,) = rt.ledger.steps(complex_.task_id)
    assert (simple_step.tier, simple_step.model) == ("local", "gemma-3-270m")
    assert simple.status is TaskStatus.SUCCEEDED and simple.cost_usd == Decimal(0)  # priced at "0"
    assert simple.baseline_usd is not None and simple.baseline_usd > 0  # measured against the deep tier
    assert (complex_step.tier, complex_step.model) == ("deep", "claude-sonnet-4-6")


def test_the_toml_examples_limits_and_tag_keys_take_effect(tmp_path: Path) -> None:
    config = tmp_path / "paymaster.toml"
    config.write_text(_block("Tiers, routes and prices", "toml"), encoding="utf-8")
    with Runtime(ledger=tmp_path / "l.db", config=config, provider=ScriptedProvider()) as rt:
        with pytest.raises(ConfigurationError, match="taem"):  # only the declared tag keys may be set
            rt.run_sync(Quick, "hello", tenant="acme", tags={"taem": "support"})
        rt.run_sync(Quick, "hello", tenant="acme", tags={"team": "support"})
        with rt.ledger.session() as s:
            accounts = s.exec(select(AccountRecord).where(col(AccountRecord.id).startswith("tenant:acme"))).all()
    caps = sorted(a.cap_picos for a in accounts if a.cap_picos is not None)
    assert caps == [50 * 10**12, 1000 * 10**12]  # the day and month limits, in pico-dollars


def test_the_plans_and_tools_snippet_runs_offline_through_a_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_block("Plans, tiers and tools", tmp_path, monkeypatch)
    printed = capsys.readouterr().out
    assert printed.startswith("succeeded 4 ")  # the plan call and three subtasks
    from paymaster import Ledger

    (task,) = Ledger(tmp_path / "paymaster.db").tasks()
    assert task.plan is not None
    assert [(s["id"], s["tier"]) for s in task.plan["subtasks"]] == [
        ("facts", "fast"), ("risk", "balanced"), ("decision", "deep"),
    ]  # fmt: skip
