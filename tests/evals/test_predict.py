"""The expected-utility router over models and cheap-check cascades."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numpy", reason="calibration needs the evals extra")

from paymaster.errors import ConfigurationError
from paymaster.evals import Cascade, HashingEmbedder, Objective, RecordSet
from paymaster.evals._predict import all_options, calibrate_utility, outcomes, pareto_options, replay

from .helpers import synthetic


def records(n: int = 60, seed: int = 0) -> RecordSet:
    return RecordSet.build(synthetic(n, seed))


def vectors(r: RecordSet) -> np.ndarray:
    return np.asarray(HashingEmbedder(64).encode(r.texts))


def test_options_are_models_then_three_model_cascades() -> None:
    opts = all_options(("a", "b", "c"))
    assert opts[:3] == ["a", "b", "c"]
    assert len(opts) == 3 + 6
    assert Cascade("a", "b", "c") in opts


def test_replay_counts_the_check_and_the_escalation_exactly() -> None:
    r = records()
    cascade = Cascade("small", "medium", "large")
    result = replay(r, [cascade] * len(r))
    for i in range(len(r)):
        paid = r.cost_usd(i, "small") + r.cost_usd(i, "medium")
        escalated = result.routes[i] == "large (escalated)"
        assert result.costs[i] == paid + (r.cost_usd(i, "large") if escalated else 0)
    assert all(result.correct)  # small's wrong answers never match medium's, so they all escalate
    correct, cost = outcomes(r, [cascade])
    assert correct[:, 0].tolist() == [float(c) for c in result.correct]
    assert cost[:, 0].sum() == pytest.approx(float(sum(result.costs)))


def test_pareto_options_keep_each_task_types_front() -> None:
    correct = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    cost = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    # type x: option 0 (cheap, wrong) and 1 (right); type y: option 0 is right and cheapest
    assert pareto_options(["x", "y"], correct, cost) == [0, 1]


def test_quality_objective_is_met_cheaper_than_the_reference() -> None:
    r = records(90)
    cal = calibrate_utility(r, vectors(r), objective=Objective.quality("0.95"), k=10)
    assert cal.met
    assert cal.train.summary.accuracy >= 0.95 * cal.reference.summary.accuracy
    assert cal.train.summary.cost_usd is not None and cal.reference.summary.cost_usd is not None
    assert cal.train.summary.cost_usd < cal.reference.summary.cost_usd
    routes = cal.router.route(vectors(r), r.task_types)
    assert len(routes) == len(r) and all(o in cal.router.options for o in routes)


def test_calibration_is_deterministic() -> None:
    r = records(60, seed=3)
    a = calibrate_utility(r, vectors(r), objective=Objective.cost("0.5"), k=10)
    b = calibrate_utility(r, vectors(r), objective=Objective.cost("0.5"), k=10)
    assert a.router.price == b.router.price and a.router.options == b.router.options
    assert a.train.routes == b.train.routes


def test_unseen_task_type_uses_every_training_prompt() -> None:
    r = records(30)
    cal = calibrate_utility(r, vectors(r), objective=Objective.quality("0.95"), k=5)
    accuracy, cost = cal.router.predict(vectors(r)[:2], ["never-seen", "never-seen"])
    assert accuracy.shape == (2, len(cal.router.options)) and np.isfinite(cost).all()


def test_mismatched_embeddings_are_an_error() -> None:
    r = records(20)
    with pytest.raises(ConfigurationError):
        calibrate_utility(r, vectors(r)[:5], objective=Objective.quality())
    with pytest.raises(ValueError):
        replay(r, ["small"])
