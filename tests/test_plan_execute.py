"""Plan and execute end to end: planners chosen per agent, fixed plans, summarisation, aggregation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paymaster import Agent, AgentDefinitionError, Complexity, Plan, Runtime, ScriptedProvider, Subtask, TaskStatus
from paymaster.cli import app
from paymaster.providers import ModelRequest

PLAN = {
    "subtasks": [
        {"id": "facts", "goal": "List the facts.", "complexity": "simple", "depends_on": [], "expected_output": ""},
        {"id": "risks", "goal": "List the risks.", "complexity": "moderate", "depends_on": [], "expected_output": ""},
        {"id": "brief", "goal": "Write the brief.", "complexity": "complex", "depends_on": ["facts", "risks"],
         "expected_output": ""},
    ]
}


class Planned(Agent):
    name = "planned"
    planner = "llm"


def test_llm_planned_task_routes_each_subtask_and_records_the_plan(ledger_path: Path) -> None:
    provider = ScriptedProvider([json.dumps(PLAN)])
    with Runtime(ledger=ledger_path, provider=provider) as rt:
        outcome = rt.run_sync(Planned, "Assess the vendor contract.")
        steps = rt.ledger.steps(outcome.task_id)
        task = rt.ledger.task(outcome.task_id)
    assert outcome.status is TaskStatus.SUCCEEDED
    assert (steps[0].kind, steps[0].tier) == ("plan", "deep")
    tiers = {s.subtask_id: s.tier for s in steps if s.kind == "execute"}
    assert tiers == {"facts": "fast", "risks": "balanced", "brief": "deep"}
    assert task is not None and task.plan is not None
    assert [(s["id"], s["tier"]) for s in task.plan["subtasks"]] == [
        ("facts", "fast"), ("risks", "balanced"), ("brief", "deep")
    ]
    assert "complexity=complex -> deep" in task.plan["subtasks"][2]["reason"]
    shown = CliRunner().invoke(app, ["ledger", "show", outcome.task_id, "--ledger", str(ledger_path)])
    assert "Cost by tier" in shown.output and "why" in shown.output


def test_invalid_plan_twice_ends_plan_invalid_with_the_raw_reply_on_the_ledger(ledger_path: Path) -> None:
    provider = ScriptedProvider(["not json at all", "still not json"])
    with Runtime(ledger=ledger_path, provider=provider) as rt:
        outcome = rt.run_sync(Planned, "Assess the vendor contract.")
        steps = rt.ledger.steps(outcome.task_id)
        task = rt.ledger.task(outcome.task_id)
    assert outcome.status is TaskStatus.PLAN_INVALID
    assert [s.kind for s in steps] == ["plan", "plan"]
    assert task is not None and task.plan is not None and task.plan["raw"] == "still not json"
    assert outcome.stop_reason is not None and "JSON" in outcome.stop_reason


class Fixed(Agent):
    name = "fixed"
    fixed_plan = Plan(subtasks=(
        Subtask(id="a", goal="Part A.", complexity=Complexity.SIMPLE),
        Subtask(id="b", goal="Part B.", complexity=Complexity.SIMPLE),
    ))


def test_fixed_plan_makes_no_planner_call_and_two_finals_are_combined_on_the_cheapest_tier(ledger_path: Path) -> None:
    provider = ScriptedProvider(["answer A", "answer B", "combined answer"])
    with Runtime(ledger=ledger_path, provider=provider) as rt:
        outcome = rt.run_sync(Fixed, "Do both parts.")
        steps = rt.ledger.steps(outcome.task_id)
    assert outcome.output == "combined answer"
    assert [s.kind for s in steps] == ["execute", "execute", "aggregate"]
    assert steps[-1].tier == "fast"
    combine = provider.calls[-1].request.messages[-1].content
    assert "### a\nanswer A" in combine and "### b\nanswer B" in combine


def test_agent_method_plans_and_aggregates_in_python(ledger_path: Path) -> None:
    class Custom(Agent):
        name = "custom"

        def make_plan(self, input: str) -> Plan | None:
            parts = [p.strip() for p in input.split(";")]
            return Plan(subtasks=tuple(Subtask(id=f"p{i}", goal=p, complexity=Complexity.SIMPLE)
                                       for i, p in enumerate(parts)))

        def aggregate(self, input: str, outputs: dict[str, str]) -> str:  # type: ignore[override]
            return " | ".join(outputs[k] for k in sorted(outputs))

    with Runtime(ledger=ledger_path, provider=ScriptedProvider(["x", "y", "z"])) as rt:
        outcome = rt.run_sync(Custom, "one; two; three")
        kinds = [s.kind for s in rt.ledger.steps(outcome.task_id)]
    assert outcome.output == "x | y | z" and kinds == ["execute"] * 3


def test_auto_planner_skips_the_planner_call_for_a_simple_input(ledger_path: Path) -> None:
    class Auto(Agent):
        name = "auto"
        planner = "auto"

    provider = ScriptedProvider()
    with Runtime(ledger=ledger_path, provider=provider) as rt:
        outcome = rt.run_sync(Auto, "What is the capital of France?")
        kinds = [s.kind for s in rt.ledger.steps(outcome.task_id)]
    assert kinds == ["execute"]


def test_long_context_is_summarised_on_the_cheapest_tier_and_recorded(ledger_path: Path) -> None:
    class Chain(Agent):
        name = "chain"
        summarise_over = 300
        fixed_plan = Plan(subtasks=(
            Subtask(id="read", goal="Read.", complexity=Complexity.SIMPLE),
            Subtask(id="more", goal="Read more.", complexity=Complexity.SIMPLE),
            Subtask(id="answer", goal="Answer.", depends_on=("read", "more")),
        ))

    long = "The contract renews on 1 March at $40,000 a year. " * 40
    provider = ScriptedProvider([long, long, "short summary", "final answer"])
    with Runtime(ledger=ledger_path, provider=provider) as rt:
        outcome = rt.run_sync(Chain, "Review.")
        steps = rt.ledger.steps(outcome.task_id)
    kinds = [(s.kind, s.tier) for s in steps]
    assert kinds == [("execute", "fast"), ("execute", "fast"), ("summarise", "fast"), ("execute", "balanced")]
    assert steps[2].note is not None and "context over 300 tokens" in steps[2].note
    final_prompt = provider.calls[-1].request.messages[-1].content
    assert "Result of step read (summarised):\nshort summary" in final_prompt
    assert "Result of step more:" in final_prompt  # the newest result is kept whole
    assert outcome.output == "final answer"
    assert isinstance(provider.calls[2].request, ModelRequest) and provider.calls[2].request.system


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"planner": "magic"}, "planner must be one of"),
        ({"max_subtasks": 0}, "max_subtasks must be a positive int"),
        ({"summarise_over": 5}, "summarise_over is a token count"),
        ({"on_cap": ("pray",)}, "on_cap lists what to do at a cap"),
    ],
)
def test_bad_planning_settings_fail_at_definition(attrs: dict[str, object], message: str) -> None:
    with pytest.raises(AgentDefinitionError, match=message):
        type("Bad", (Agent,), {"name": "bad", **attrs})


def test_score_mode_from_a_thresholds_file_in_the_config_routes_by_score(tmp_path: Path) -> None:
    from paymaster.router import LengthScorerSpec, Thresholds, save_thresholds

    save_thresholds(
        Thresholds(scorer=LengthScorerSpec(scale_words=10), tiers=("fast", "balanced", "deep"), thresholds=(0.3, 0.6)),
        tmp_path / "thresholds.json",
    )
    config = tmp_path / "paymaster.toml"
    config.write_text('[router]\nthresholds = "thresholds.json"\n')

    class Plain(Agent):
        name = "plain"

    with Runtime(ledger=tmp_path / "l.db", provider=ScriptedProvider(), config=config) as rt:
        short = rt.run_sync(Plain, "Hi.")
        long = rt.run_sync(Plain, "Explain " + "very " * 40 + "carefully.")
        (s1,) = rt.ledger.steps(short.task_id)
        (s2,) = rt.ledger.steps(long.task_id)
    assert (s1.tier, s2.tier) == ("fast", "deep")
    assert s2.note is not None and "(thresholds thresholds.json)" in s2.note
