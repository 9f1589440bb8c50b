"""Policies in the runtime: a cascade or the utility router run through ReplayProvider match the offline replay."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

pytest.importorskip("numpy", reason="the utility router needs the evals extra")

from paymaster import Agent, Budget, Runtime
from paymaster._money import from_picos
from paymaster.errors import ConfigurationError
from paymaster.evals import HashingEmbedder, Objective, PolicyResult, RecordSet, calibrate_cascade, cascaded
from paymaster.evals._policyfile import write_cascade_policy, write_utility_policy
from paymaster.evals._predict import calibrate_utility, replay
from paymaster.providers._replay import RecordedOutcome, RecordedPrompt, ReplayProvider
from paymaster.router import Cascade, PolicyRouter, load_router

RATE = {"small": Decimal("0.000001"), "medium": Decimal("0.000005"), "large": Decimal("0.00002")}
WRONG = {"small": "C", "medium": "B", "large": "D"}


def recordings(n: int = 48, seed: int = 0) -> list[RecordedPrompt]:
    """'lookup' prompts: small and medium right. 'mixed': small right 70%, medium right where small is,
    large always; wrong answers differ, so small + medium check -> large is right and cheaper than large."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        mixed = i % 2 == 0
        words = rng.choices(["prove", "lemma", "bound"] if mixed else ["city", "rain", "wind"], k=12 if mixed else 5)
        prompt = f"q{i}: " + " ".join(words)
        small_right = (not mixed) or rng.random() < 0.7
        right = {"small": small_right, "medium": small_right, "large": True}
        outcomes = {t: RecordedOutcome("A" if right[t] else WRONG[t], right[t], RATE[t] * len(prompt.split()))
                    for t in RATE}
        kind = "mixed" if mixed else "lookup"
        out.append(RecordedPrompt(id=f"q{i}", prompt=prompt, outcomes=outcomes, task_type=kind))
    return out


class Bench(Agent):
    """Sends the prompt as it is."""

    name = "bench"
    instructions = ""
    budget = Budget()


def run_all(tmp_path: Path, prompts: list[RecordedPrompt], policy: Path) -> tuple[list[list[str]], list[Decimal]]:
    """Every prompt as a task through Runtime + the policy + ReplayProvider: each task's answering tiers and cost."""
    provider = ReplayProvider(prompts)
    stages: list[list[str]] = []
    costs: list[Decimal] = []
    with Runtime(ledger=tmp_path / "l.db", provider=provider, tiers=provider.tier_table(),
                 prices=provider.price_book(), router=policy) as runtime:
        assert isinstance(runtime.router, PolicyRouter)

        async def go() -> None:
            for p in prompts:
                outcome = await runtime.run(Bench, p.prompt, tenant="t")
                steps = [s for s in runtime.ledger.steps(outcome.task_id) if s.kind == "execute"]
                assert all(s.note for s in steps)  # every stage says why it ran
                stages.append([s.tier or "" for s in steps])
                task = runtime.ledger.task(outcome.task_id)
                assert task is not None
                costs.append(from_picos(task.cost_picos))

        anyio.run(go)
    return stages, costs


def expected_stages(result: PolicyResult, options: list[str | Cascade]) -> list[list[str]]:
    out = []
    for route, option in zip(result.routes, options, strict=True):
        if isinstance(option, str):
            out.append([option])
        elif route.endswith("(checked)"):
            out.append([option.answer, option.check])
        else:
            out.append([option.answer, option.check, option.escalate])
    return out


def test_a_cascade_policy_in_the_runtime_matches_the_offline_replay(tmp_path: Path) -> None:
    prompts = recordings()
    records = RecordSet.build(prompts)
    calibration = calibrate_cascade(records, objective=Objective.quality("0.95", delta=None), escalate="large",
                                    models=["small", "medium"])
    assert calibration.cascade == Cascade("small", "medium", "large")
    policy = write_cascade_policy(calibration, tmp_path / "policy.json")
    offline = cascaded(records, "cascade", calibration.cascade, [True] * len(records), ["large"] * len(records))
    stages, costs = run_all(tmp_path, prompts, policy)
    assert stages == expected_stages(offline, [calibration.cascade] * len(records))
    assert costs == list(offline.costs)  # the check's cost and every escalation counted, to the pico-dollar
    assert any(len(s) == 3 for s in stages) and any(len(s) == 2 for s in stages)


def test_the_utility_policy_in_the_runtime_matches_the_offline_replay(tmp_path: Path) -> None:
    prompts = recordings(60, seed=1)
    records = RecordSet.build(prompts)
    embedder = HashingEmbedder(64)
    vectors = embedder.encode(records.texts)
    options: list[str | Cascade] = ["small", Cascade("small", "medium", "large"), "large"]
    calibration = calibrate_utility(records, vectors, objective=Objective.quality("0.95", delta=None), k=8,
                                    prior_weight=1.0, options=options)
    policy = write_utility_policy(calibration, tmp_path / "policy.json", embedder=embedder.name)
    chosen = calibration.router.route(vectors)  # what the runtime does: task types from the neighbours
    offline = replay(records, chosen)
    stages, costs = run_all(tmp_path, prompts, policy)
    assert stages == expected_stages(offline, list(chosen))
    assert costs == list(offline.costs)
    assert {"small", "small + medium check -> large"} <= {o if isinstance(o, str) else o.label for o in chosen}


def test_load_router_reads_either_file_and_names_a_wrong_one(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"format": "something"}')
    provider = ReplayProvider(recordings(6))
    with pytest.raises(ConfigurationError, match="neither a thresholds file"):
        load_router(bad, provider.tier_table())
    broken = tmp_path / "p.json"
    broken.write_text('{"format": "paymaster.policy", "kind": "cascade"}')
    with pytest.raises(ConfigurationError, match="a cascade policy needs"):
        load_router(broken, provider.tier_table())


def test_a_config_file_names_the_policy(tmp_path: Path) -> None:
    prompts = recordings(12)
    calibration = calibrate_cascade(RecordSet.build(prompts), objective=Objective.quality("0.95", delta=None),
                                    escalate="large", models=["small", "medium"])
    write_cascade_policy(calibration, tmp_path / "policy.json")
    (tmp_path / "paymaster.toml").write_text('[router]\npolicy = "policy.json"\n')  # relative to the config file
    provider = ReplayProvider(prompts)
    with Runtime(ledger=tmp_path / "l.db", provider=provider, tiers=provider.tier_table(),
                 prices=provider.price_book(), config=tmp_path / "paymaster.toml") as runtime:
        assert isinstance(runtime.router, PolicyRouter) and runtime.router.policy.kind == "cascade"


def test_an_eval_through_a_cascade_credits_the_answer_not_the_check(tmp_path: Path) -> None:
    from paymaster.evals import GoldenItem, run_golden
    from paymaster.evals._scorers import Recorded

    prompts = recordings(16)
    records = RecordSet.build(prompts)
    calibration = calibrate_cascade(records, objective=Objective.quality("0.95", delta=None), escalate="large",
                                    models=["small", "medium"])
    policy = write_cascade_policy(calibration, tmp_path / "policy.json")
    offline = cascaded(records, "cascade", calibration.cascade, [True] * len(records), ["large"] * len(records))
    items = [GoldenItem(id=p.id, input=p.prompt, scorer=Recorded()) for p in prompts]
    provider = ReplayProvider(prompts)
    with Runtime(ledger=tmp_path / "l.db", provider=provider, tiers=provider.tier_table(),
                 prices=provider.price_book(), router=policy) as runtime:
        report = anyio.run(lambda: run_golden(runtime, Bench, items, replay=provider))
    # The answering tier is the cascade's answer (checked) or its escalation, never the check tier.
    assert [r.tier for r in report.results] == [route.split(" ")[0] for route in offline.routes]
    assert [r.correct for r in report.results] == list(offline.correct)
    assert report.summary.cost_usd == offline.summary.cost_usd


def _cascade_policy(tmp_path: Path, prompts: list[RecordedPrompt]) -> Path:
    calibration = calibrate_cascade(RecordSet.build(prompts), objective=Objective.quality("0.95", delta=None),
                                    escalate="large", models=["small", "medium"])
    return write_cascade_policy(calibration, tmp_path / "policy.json")


def test_a_policy_tier_without_a_provider_fails_when_the_runtime_is_built(tmp_path: Path) -> None:
    from paymaster.router import Tier, TierTable

    prompts = recordings(12)
    policy = _cascade_policy(tmp_path, prompts)
    provider = ReplayProvider(prompts)
    served = provider.tier_table()
    # The escalation tier is served elsewhere, and only the replay provider is configured.
    tiers = TierTable([*served.tiers[:-1], Tier(name="large", provider="elsewhere", model="large")])
    with pytest.raises(ConfigurationError, match=r"router \(policy.json\) uses tier 'large'.*'elsewhere'"):
        Runtime(ledger=tmp_path / "l.db", providers={"replay": provider}, tiers=tiers,
                prices=provider.price_book(), router=policy)


def test_admission_counts_every_stage_a_cascade_may_run(tmp_path: Path) -> None:
    from paymaster import Plan, Subtask
    from paymaster.runtime._admission import admit

    prompts = recordings(12)
    policy = _cascade_policy(tmp_path, prompts)
    provider = ReplayProvider(prompts)
    with Runtime(ledger=tmp_path / "l.db", provider=provider, tiers=provider.tier_table(),
                 prices=provider.price_book(), router=policy) as runtime:
        plan = Plan(subtasks=[Subtask(id="a", goal=prompts[0].prompt), Subtask(id="b", goal=prompts[1].prompt)])
        decisions = {s.id: runtime.router.route(s) for s in plan.subtasks}
        estimate = anyio.run(admit, runtime.ledger, runtime.prices, [], plan, decisions, "")

        def single(stage: str) -> Decimal:
            """The estimate if every subtask ran only this stage of its cascade."""
            only = {}
            for sid, d in decisions.items():
                assert d.cascade is not None
                only[sid] = d.model_copy(update={"cascade": None, "tier": getattr(d.cascade, stage)})
            high = anyio.run(admit, runtime.ledger, runtime.prices, [], plan, only, "").high_usd
            assert high is not None
            return high

        escalation = single("escalate")
        assert estimate.high_usd == single("answer") + single("check") + escalation
        # A budget that covers the escalation alone but not every stage: refused before any call is made.
        cap = (estimate.high_usd + escalation) / 2

        class Pair(Bench):
            name = "pair"
            budget = Budget(usd=cap)
            fixed_plan = plan

        outcome = runtime.run_sync(Pair, "two questions")
    assert outcome.status.value == "budget_exceeded" and outcome.stop_reason is not None
    assert outcome.stop_reason.startswith("plan admission") and outcome.calls == 0
