"""Shadow evaluation: a sample of live subtasks re-run on a reference tier, on its own budget, in the background."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from paymaster import (
    Agent,
    Budget,
    ConfigurationError,
    ModelRequest,
    Runtime,
    ScriptedProvider,
    Shadow,
    TaskStatus,
    Usage,
)
from paymaster._money import from_picos
from paymaster.ledger._queries import Scope, summary
from paymaster.ledger._reader import Reader
from paymaster.ledger._shadows import shadow_days, shadow_records
from paymaster.ledger._statements import statement
from paymaster.planners import Complexity
from paymaster.providers._replay import RecordedOutcome, RecordedPrompt, ReplayProvider
from paymaster.router import answer_key

pytestmark = pytest.mark.ledgers  # the ledger_path tests run on SQLite and PostgreSQL


class Clerk(Agent):
    """Answers on the balanced tier (the default route of moderate work)."""

    name = "clerk"
    budget = Budget(usd="1.00")


def models_reply(request: ModelRequest) -> str:
    """balanced answers 'paris'; deep agrees on even questions and says 'lyon' on odd ones; the judge says NO."""
    user = request.messages[-1].content
    if request.model == "gpt-4o-mini":  # the judge (fast, the cheapest tier)
        return "NO."
    number = int(user.split()[1].rstrip(":"))
    if request.model == "claude-sonnet-4-6" and number % 2:
        return "Lyon"
    return "Paris."


def _run(rt: Runtime, inputs: list[str], tenant: str = "acme") -> list[str]:
    async def go() -> list[str]:
        ids = []
        for text in inputs:
            outcome = await rt.run(Clerk, text, tenant=tenant, tags={"team": "ops"})
            assert outcome.status is TaskStatus.SUCCEEDED, outcome.stop_reason
            ids.append(outcome.task_id)
        await rt.shadows_done()
        return ids

    return anyio.run(go)


def test_shadow_runs_are_eval_rows_on_their_own_account_and_never_in_the_live_totals(ledger_path: Path) -> None:
    provider = ScriptedProvider(models_reply)
    with Runtime(ledger=ledger_path, provider=provider,
                 shadow=Shadow(rate=1, tier="deep", budget="5.00")) as rt:
        ids = _run(rt, [f"Question {i}: which city is the capital of France?" for i in range(6)])
        live_steps = {i: rt.ledger.steps(i) for i in ids}
        live = {i: rt.ledger.task(i) for i in ids}
        records = shadow_records(rt.ledger)
        eval_account = rt.ledger.account(Shadow(rate=1, tier="deep", budget="5").account(records[0].created_at))
        tenant_account = rt.ledger.account("tenant:acme")
        shadow_steps = [s for r in records for s in rt.ledger.steps(r.task_id)]
        month = dt.datetime.fromtimestamp(records[0].created_at, dt.UTC).strftime("%Y-%m")
        with Reader(rt.ledger) as reader:
            bill = statement(reader, month, tenant="acme")
            totals = summary(reader, Scope(tenant="acme"))
    # The live tasks hold only their own calls, and their totals are those calls.
    for task_id in ids:
        task = live[task_id]
        assert task is not None
        assert [s.kind for s in live_steps[task_id]] == ["execute"]
        assert task.cost_picos == sum(s.cost_picos or 0 for s in live_steps[task_id])
    # One shadow row per subtask: deep agreed on even questions (same answer, no judge), the judge said NO on odd.
    assert [(r.live_task_id, r.routed, r.reference) for r in records] == [(i, "balanced", "deep") for i in ids]
    assert [r.agreed for r in records] == [True, False] * 3
    assert [r.scored_by for r in records] == ["same answer", "judge on fast"] * 3
    assert {s.kind for s in shadow_steps} == {"eval"}
    assert sorted(s.tier for s in shadow_steps) == ["deep"] * 6 + ["fast"] * 3
    # Their cost is on the eval account alone, never the tenant's.
    shadow_cost = sum((r.cost for r in records), Decimal(0))
    assert shadow_cost > 0
    assert eval_account is not None and from_picos(eval_account.spent_picos) == shadow_cost
    assert tenant_account is not None
    assert tenant_account.spent_picos == sum(t.cost_picos for t in live.values() if t is not None)
    # Statements and reports: the live work as it was, shadowing on the shared evals line only.
    assert [(line.name, line.tasks) for line in bill.lines] == [("clerk", 6), ("shared: evals", 0)]
    assert bill.lines[1].direct == shadow_cost
    assert bill.lines[0].direct == from_picos(tenant_account.spent_picos)
    assert totals.tasks == 6
    [day] = shadow_days(records)
    assert (day.scored, day.matched, day.quality, day.cost) == (6, 3, 0.5, shadow_cost)


def test_the_shadow_budget_caps_shadow_spend_and_the_live_tasks_never_notice(ledger_path: Path) -> None:
    # Long replies: a deep call costs about $0.033 (1,000 tokens in at $3 a million, 2,000 out at $15).
    provider = ScriptedProvider(models_reply, usage=lambda request, _: Usage(
        input_tokens=1_000, output_tokens=min(2_000, request.max_tokens)))
    shadow = Shadow(rate=1, tier="deep", budget="0.10")
    with Runtime(ledger=ledger_path, provider=provider, shadow=shadow) as rt:
        ids = _run(rt, [f"Question {i}: which city is the capital of France?" for i in range(8)])
        records = shadow_records(rt.ledger)
        account = rt.ledger.account(shadow.account(records[0].created_at))
    assert len(ids) == 8 and len(records) == 8
    assert account is not None and account.cap_picos is not None
    assert account.spent_picos <= account.cap_picos and account.reserved_picos == 0
    stopped = [r for r in records if r.status == "budget_exceeded"]
    assert stopped and all(r.agreed is None for r in stopped)
    assert from_picos(account.spent_picos) == sum((r.cost for r in records), Decimal(0))


def test_a_failing_reference_tier_is_recorded_on_the_shadow_row_not_raised(tmp_path: Path) -> None:
    def reply(request: ModelRequest) -> str:
        if request.model == "claude-sonnet-4-6":
            raise RuntimeError("reference tier is down")
        return "Paris."

    with Runtime(ledger=tmp_path / "l.db", provider=ScriptedProvider(reply),
                 shadow=Shadow(rate=1, tier="deep", budget="1")) as rt:
        _run(rt, ["Question 1: which city is the capital of France?"])
        [record] = shadow_records(rt.ledger)
    assert record.status == "failed" and record.agreed is None


class Strict(Clerk):
    """Decides agreement itself: the first word must match."""

    name = "strict"

    def agrees(self, output: str, reference: str) -> bool | None:
        return output.split()[0].strip(".").lower() == reference.split()[0].strip(".").lower()


def test_the_agents_own_verdict_is_used_and_no_judge_is_paid(tmp_path: Path) -> None:
    provider = ScriptedProvider(models_reply)
    with Runtime(ledger=tmp_path / "l.db", provider=provider,
                 shadow=Shadow(rate=1, tier="deep", budget="1")) as rt:
        anyio.run(_strict, rt)
        records = shadow_records(rt.ledger, Scope(agent="strict"))
    assert [(r.agreed, r.scored_by) for r in records] == [(True, "agent"), (False, "agent")]
    assert not [c for c in provider.calls if c.request.model == "gpt-4o-mini"]


async def _strict(rt: Runtime) -> None:
    for i in (2, 3):
        await rt.run(Strict, f"Question {i}: which city is the capital of France?")
    await rt.shadows_done()


class Deep(Clerk):
    name = "deep-clerk"
    routes = {Complexity.MODERATE: "deep"}  # noqa: RUF012


def test_a_subtask_already_on_the_reference_tier_counts_as_matched_for_free(tmp_path: Path) -> None:
    provider = ScriptedProvider(models_reply)
    with Runtime(ledger=tmp_path / "l.db", provider=provider,
                 shadow=Shadow(rate=1, tier="deep", budget="1")) as rt:
        rt.run_sync(Deep, "Question 3: which city is the capital of France?")
        [record] = shadow_records(rt.ledger)
    assert (record.agreed, record.scored_by, record.cost) == (True, "same tier", Decimal(0))
    assert len(provider.calls) == 1  # the live call only


def test_the_sample_follows_the_rate(tmp_path: Path) -> None:
    with Runtime(ledger=tmp_path / "l.db", provider=ScriptedProvider(models_reply),
                 shadow=Shadow(rate=0.25, tier="deep", budget="5", seed=3)) as rt:
        _run(rt, [f"Question {2 * i}: capital of France?" for i in range(40)])
        records = shadow_records(rt.ledger)
    draws = random.Random(3)
    assert len(records) == sum(draws.random() < 0.25 for _ in range(40))
    assert 0 < len(records) < 40


def test_shadow_settings_are_checked_when_the_runtime_is_built(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not a float"):
        Shadow(rate=0.1, tier="deep", budget=0.5)
    with pytest.raises(ConfigurationError, match="rate"):
        Shadow(rate=0, tier="deep", budget="1")
    with pytest.raises(ConfigurationError, match="no-such"):
        Runtime(ledger=tmp_path / "a.db", provider=ScriptedProvider(),
                shadow=Shadow(rate=0.1, tier="no-such", budget="1"))
    only_openai = {"openai": ScriptedProvider()}
    with pytest.raises(ConfigurationError, match=r"Runtime\(shadow=...\) uses tier 'deep'.*anthropic"):
        Runtime(ledger=tmp_path / "b.db", providers=only_openai, shadow=Shadow(rate=0.1, tier="deep", budget="1"))


class Answerer(Agent):
    """Sends the prompt as it is, on the small tier; agreement is the same choice letter."""

    name = "answerer"
    instructions = ""
    routes = {Complexity.MODERATE: "small"}  # noqa: RUF012

    def agrees(self, output: str, reference: str) -> bool | None:
        return answer_key(output) == answer_key(reference)


def test_through_recorded_outcomes_shadow_quality_and_cost_are_what_the_recordings_say(tmp_path: Path) -> None:
    rng = random.Random(5)
    prompts = []
    for i in range(30):
        small = rng.choice("AB")
        prompts.append(RecordedPrompt(id=f"q{i}", prompt=f"q{i}: pick A or B", outcomes={
            "small": RecordedOutcome(small, small == "A", Decimal("0.000002")),
            "large": RecordedOutcome("A", True, Decimal("0.000040") + Decimal(i) / 10**6),
        }))
    provider = ReplayProvider(prompts)
    with Runtime(ledger=tmp_path / "l.db", provider=provider, tiers=provider.tier_table(),
                 prices=provider.price_book(), shadow=Shadow(rate=1, tier="large", budget="1")) as rt:

        async def go() -> None:
            for p in prompts:
                await rt.run(Answerer, p.prompt)
            await rt.shadows_done()

        anyio.run(go)
        records = shadow_records(rt.ledger)
    expected = [p.outcomes["small"].response == "A" for p in prompts]
    assert [r.agreed for r in records] == expected
    assert sum((r.cost for r in records), Decimal(0)) == sum((p.outcomes["large"].cost_usd for p in prompts),
                                                             Decimal(0))


def test_the_report_and_calibrate_from_ledger_read_the_shadow_records(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from paymaster.cli import app

    db = tmp_path / "l.db"
    with Runtime(ledger=db, provider=ScriptedProvider(models_reply),
                 shadow=Shadow(rate=1, tier="deep", budget="5")) as rt:
        # 40 questions: deep disagrees on the odd ones among the first 8 only, so 36 of 40 match.
        _run(rt, [f"Question {i if i < 8 else 2 * i}: capital of France?" for i in range(40)])
    runner = CliRunner()
    report = runner.invoke(app, ["report", "--ledger", str(db), "--format", "json"])
    assert report.exit_code == 0, report.output
    data = json.loads(report.output)
    assert data["summary"]["tasks"] == 40  # the shadow runs are not tasks of the report
    [day] = data["shadow_quality"]
    assert (day["scored"], day["matched"], day["quality"]) == (40, 36, 0.9)
    text = runner.invoke(app, ["report", "--ledger", str(db)])
    assert "Router quality measured by shadow evaluation" in text.output and "90.0%" in text.output
    held = runner.invoke(app, ["calibrate", "--from-ledger", str(db), "--target", "0.8"])
    assert held.exit_code == 0, held.output
    assert "holds on live traffic" in held.output
    failed = runner.invoke(app, ["calibrate", "--from-ledger", str(db), "--target", "0.95"])
    assert failed.exit_code == 1, failed.output
    assert "not certified" in failed.output and "balanced" in failed.output
    assert runner.invoke(app, ["calibrate"]).exit_code == 2


def test_the_readme_snippet_runs_offline_and_records_shadow_runs(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from readme_snippets import run_block

    run_block("Shadow evaluation", tmp_path, monkeypatch)
    with Reader(tmp_path / "paymaster.db") as reader:
        records = shadow_records(reader)
    assert 0 < len(records) < 30
    assert all(r.agreed and r.scored_by == "same answer" and r.agent == "clerk" for r in records)


def test_a_kill_switch_thrown_after_the_live_task_stops_its_shadow_runs(ledger_path: Path) -> None:
    provider = ScriptedProvider(models_reply)
    with Runtime(ledger=ledger_path, provider=provider,
                 shadow=Shadow(rate=1, tier="deep", budget="5.00")) as rt, \
            Runtime(ledger=ledger_path, provider=provider) as other:

        async def go() -> str:
            outcome = await rt.run(Clerk, "Question 1: which city is the capital of France?", tenant="acme")
            other.kill(tenant="acme")  # another worker, before the shadow run has had a turn
            await rt.shadows_done()
            return outcome.task_id

        live_id = anyio.run(go)
        (record,) = shadow_records(rt.ledger)
        shadow = rt.ledger.task(record.task_id)
        shadow_steps = rt.ledger.steps(record.task_id)
        other.revive(tenant="acme")
    assert record.live_task_id == live_id
    assert shadow is not None and shadow.status == "killed" and "tenant:acme" in (shadow.stop_reason or "")
    assert shadow_steps == [] and record.cost == 0  # no reference call was made, nothing was spent
