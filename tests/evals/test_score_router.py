"""The score router: decisions and their reasons, thresholds files, and the learned scorer behind it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("numpy", reason="calibration needs the evals extra")

from paymaster import Agent, Complexity, Runtime, ScriptedProvider, Subtask, Tier, TierTable
from paymaster.errors import ConfigurationError, UnknownTierError
from paymaster.evals import HashingEmbedder, Objective, RecordSet, calibrate_knn, focus, learn_boilerplate
from paymaster.router import LengthScorer, LengthScorerSpec, ScoreRouter, Thresholds, load_thresholds, save_thresholds
from paymaster.router._score import walk

from .helpers import synthetic

TABLE = TierTable([Tier(name=n, provider="scripted", model=f"m-{n}") for n in ("fast", "balanced", "deep")])


def length_router(thresholds: tuple[float, float] = (0.3, 0.6)) -> ScoreRouter:
    spec = LengthScorerSpec(scale_words=10)
    file = Thresholds(scorer=spec, tiers=("fast", "balanced", "deep"), thresholds=thresholds)
    return ScoreRouter(TABLE, file, LengthScorer(spec, 2), source="t.json")


def task(goal: str, complexity: Complexity = Complexity.MODERATE) -> Subtask:
    return Subtask(id="s1", goal=goal, complexity=complexity)


@pytest.mark.parametrize(
    ("words", "tier"), [(2, "fast"), (4, "fast"), (5, "balanced"), (15, "balanced"), (16, "deep"), (80, "deep")]
)
def test_the_score_picks_the_band_between_thresholds(words: int, tier: str) -> None:
    # length score = words / (words + 10): 4 words -> 0.286, 5 -> 0.333, 15 -> 0.6, 16 -> 0.615
    decision = length_router().route(task(" ".join(["w"] * words)))
    assert decision.tier.name == tier and decision.subtask_id == "s1"


def test_every_decision_says_why() -> None:
    decision = length_router().route(task("one two three four five six"))
    assert decision.reason == (
        "score length: 6 words -> 0.375; fast 0.375 > 0.300; balanced 0.375 <= 0.600 -> balanced (thresholds t.json)"
    )
    assert "deep 0.889 > 0.600" not in length_router().route(task("w " * 80)).reason  # only two boundaries
    assert length_router().route(task("w " * 80)).reason.endswith("-> deep (thresholds t.json)")


def test_an_agents_explicit_route_wins() -> None:
    decision = length_router().route(task("w " * 80, Complexity.SIMPLE), {Complexity.SIMPLE: "fast"})
    assert decision.tier.name == "fast" and "agent override" in decision.reason


def test_walk_stops_at_the_first_boundary_not_above_its_threshold() -> None:
    assert walk([0.9, 0.1, 0.9], [0.5, 0.5, 0.5]) == 1
    assert walk([0.9, 0.9], [0.5, 0.5]) == 2
    assert walk([float("nan"), 0.9], [0.5, 0.5]) == 0  # an unusable score never escalates
    assert walk([], []) == 0


def test_tiers_must_exist_in_the_runtime() -> None:
    file = Thresholds(scorer=LengthScorerSpec(), tiers=("fast", "huge"), thresholds=(0.5,))
    with pytest.raises(UnknownTierError, match="unknown tier 'huge'"):
        ScoreRouter(TABLE, file, LengthScorer(LengthScorerSpec(), 1))


def test_thresholds_file_round_trip(tmp_path: Path) -> None:
    file = Thresholds(
        scorer=LengthScorerSpec(scale_words=42), tiers=("fast", "deep"), thresholds=(0.25,),
        objective={"kind": "quality", "target": "0.95", "reference": "deep"},
        train={"items": 3, "accuracy": "1.0000", "cost_usd": "0.0003", "tier_split": {"fast": 2, "deep": 1}},
    )
    path = save_thresholds(file, tmp_path / "t.json")
    assert load_thresholds(path) == file
    assert json.loads(path.read_text())["format"] == "paymaster.thresholds"
    router = ScoreRouter.from_file(path, TABLE)
    assert router.decide("a b c")[0] == "fast" and router.source == "t.json"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"format": "other"}', "not a Paymaster thresholds file"),
        ('{"format": "paymaster.thresholds", "version": 2, "scorer": {"kind": "length"}, "tiers": ["a", "b"], '
         '"thresholds": [0.1]}', "version 2 is not supported"),
        ('{"format": "paymaster.thresholds", "scorer": {"kind": "length"}, "tiers": ["a", "b", "c"], '
         '"thresholds": [0.1]}', "3 tiers need 2 thresholds"),
        ('{"format": "paymaster.thresholds", "scorer": {"kind": "length"}, "tiers": ["a", "a"], '
         '"thresholds": [0.1]}', "tiers must be unique"),
        ('{"format": "paymaster.thresholds", "scorer": {"kind": "magic"}, "tiers": ["a"], "thresholds": []}',
         "scorer"),
    ],
)
def test_bad_thresholds_files_are_clear(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=message):
        load_thresholds(path)
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_thresholds(tmp_path / "missing.json")


def test_a_calibrated_knn_router_loads_from_its_files_and_routes_like_the_sweep(tmp_path: Path) -> None:
    records = RecordSet.build(synthetic(90, 3))
    boilerplate = learn_boilerplate(records.texts)
    embedder = HashingEmbedder(256)
    vectors = embedder.encode([focus(t, frozenset(boilerplate)) for t in records.texts])
    goal = Objective.quality("0.95", delta=None)  # the point estimate: this test is about loading, not certifying
    calibration = calibrate_knn(records, vectors, embedder=embedder.name, objective=goal,
                                boilerplate=boilerplate, ks=(5,), prior_weights=(0.0,))
    path = calibration.write(tmp_path / "router.json")
    table = TierTable([Tier(name=n, provider="scripted", model=n) for n in ("small", "medium", "large")])
    router = ScoreRouter.from_file(path, table)
    easy = router.route(task("q: weather sunny today rain city"))
    hard = router.route(task("q: " + " ".join(["prove theorem integral lemma eigenvalue"] * 6)))
    assert easy.tier.name == "small" and hard.tier.name != "small"
    assert "knn k=5 of 90 recorded prompts (hashing-256)" in hard.reason
    # A tampered index is refused.
    index = tmp_path / "router.knn.npz"
    index.write_bytes(index.read_bytes()[:-10])
    with pytest.raises(ConfigurationError, match="kNN index"):
        ScoreRouter.from_file(path, table)


@pytest.mark.anyio
async def test_the_runtime_routes_in_score_mode(tmp_path: Path) -> None:
    class Writer(Agent):
        name = "writer"

    with Runtime(ledger=tmp_path / "l.db", provider=ScriptedProvider(), tiers=TABLE) as runtime:
        runtime.router = length_router()
        outcome = await runtime.run(Writer, "Summarise: " + "many words " * 30)
        [step] = runtime.ledger.steps(outcome.task_id)
        assert step.tier == "deep" and step.note is not None and "thresholds t.json" in step.note
