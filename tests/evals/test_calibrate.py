"""Calibration: the cheapest setting that meets the target, the best under a cost cap, and reproducibility."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numpy", reason="calibration needs the evals extra")

from paymaster.errors import ConfigurationError
from paymaster.evals import (
    Calibration,
    CurvePoint,
    HashingEmbedder,
    Objective,
    RecordSet,
    calibrate_cascade,
    calibrate_knn,
    calibrate_length,
    choose,
    focus,
    learn_boilerplate,
    pareto,
)
from paymaster.router._knn import neighbours

from .helpers import TIERS, synthetic


def records(n: int = 60, seed: int = 0) -> RecordSet:
    return RecordSet.build(synthetic(n, seed))


def test_records_are_ordered_cheapest_first_and_sum_exactly() -> None:
    r = records()
    assert r.models == TIERS
    assert r.cost_usd(0, "large") == Decimal("0.00002") * len(r.prompts[0].prompt.split())
    assert r.subset([0, 1]).models == TIERS and len(r.subset([0, 1])) == 2
    assert r.restrict(["large", "small"]).models == ("large", "small")  # the order given is kept


def test_choose_takes_the_cheapest_point_meeting_the_quality_target() -> None:
    points = [CurvePoint(0.70, 1.0), CurvePoint(0.96, 5.0), CurvePoint(0.95, 3.0), CurvePoint(1.0, 9.0),
              CurvePoint(0.95, 3.0, {"second": True})]
    chosen, met = choose(points, Objective.quality("0.95"), reference_accuracy=1.0, reference_cost=9.0)
    assert met and chosen is points[2]  # ties go to the earlier point
    chosen, met = choose(points, Objective.cost("0.5"), reference_accuracy=1.0, reference_cost=9.0)
    assert met and chosen is points[2]  # best accuracy costing <= 4.5
    chosen, met = choose(points, Objective.quality("1.5"), reference_accuracy=1.0, reference_cost=9.0)
    assert not met and chosen is points[3]  # unreachable: the most accurate point, flagged
    assert [p.cost for p in pareto(points)] == [1.0, 3.0, 5.0, 9.0]
    with pytest.raises(ConfigurationError):
        Objective.quality("0")


def test_length_calibration_finds_the_cheapest_thresholds_that_meet_the_target() -> None:
    r = records(300)  # enough items for the target to be certified at delta 0.1
    calibration = calibrate_length(r, objective=Objective.quality("0.95"), scale_words=10)
    assert calibration.met and calibration.tiers == TIERS
    s = calibration.train.summary
    assert s.accuracy >= 0.95  # large is always right: the reference accuracy is 1.0
    # Hard prompts are the long ones: they must reach "large"; easy (short) ones can stay on "small".
    for prompt, route in zip(r.prompts, calibration.train.routes, strict=True):
        assert route == ("large" if prompt.task_type == "hard" else "small")
    # And no swept setting that meets the target is cheaper.
    floor = 0.95 * 1.0 - 1e-12
    assert min(p.cost for p in calibration.curve if p.accuracy >= floor) == pytest.approx(float(s.cost_usd or 0))


def test_cost_objective_gives_the_best_accuracy_within_the_cap() -> None:
    r = records()
    all_large = float(sum(r.cost_usd(i, "large") for i in range(len(r))))
    calibration = calibrate_length(r, objective=Objective.cost("0.05", delta=None), scale_words=10)
    assert float(calibration.train.summary.cost_usd or 0) <= 0.05 * all_large
    assert calibration.met
    best = max(p.accuracy for p in calibration.curve if p.cost <= 0.05 * all_large + 1e-15)
    assert calibration.train.summary.accuracy == pytest.approx(best)
    # With a confidence level, the cost's upper bound (not only its estimate) must be within the target.
    certified = calibrate_length(r, objective=Objective.cost("0.2"), scale_words=10)
    assert certified.met and certified.choice is not None and certified.choice.certificate is not None
    assert certified.choice.certificate.estimate <= certified.choice.certificate.bound <= 0.2
    assert float(certified.train.summary.cost_usd or 0) <= 0.2 * all_large


def knn_calibration(seed: int = 0) -> tuple[RecordSet, Calibration]:
    r = records(90, seed)
    boilerplate = learn_boilerplate(r.texts)
    embedder = HashingEmbedder(256)
    vectors = embedder.encode([focus(t, frozenset(boilerplate)) for t in r.texts])
    return r, calibrate_knn(r, vectors, embedder=embedder.name, objective=Objective.quality("0.95"),
                            boilerplate=boilerplate, ks=(3, 5), prior_weights=(0.0, 2.0))


def test_knn_calibration_learns_which_prompts_need_the_large_tier() -> None:
    r, calibration = knn_calibration()
    assert calibration.met
    train = calibration.train
    assert train.summary.accuracy >= 0.95
    easy = [route for route, p in zip(train.routes, r.prompts, strict=True) if p.task_type == "easy"]
    hard = [route for route, p in zip(train.routes, r.prompts, strict=True) if p.task_type == "hard"]
    assert easy.count("small") >= 0.9 * len(easy)  # judged leave-one-out, from similar prompts only
    assert all(route != "small" for route in hard)


def test_calibration_is_reproducible_byte_for_byte(tmp_path: Path) -> None:
    outputs = []
    for run in ("a", "b"):
        _, calibration = knn_calibration(seed=7)
        path = calibration.write(tmp_path / run / "thresholds.json")
        outputs.append((path.read_text(), calibration.curve))
    assert outputs[0] == outputs[1]
    assert (tmp_path / "a" / "thresholds.knn.npz").read_bytes() != b""


def test_leave_one_out_never_lets_a_prompt_vote_for_itself() -> None:
    vectors = HashingEmbedder(64).encode(["alpha beta", "alpha beta", "gamma delta", "gamma delta epsilon"])
    nbrs = neighbours(vectors, vectors, 2, exclude_self=True)
    assert all(i not in row for i, row in enumerate(nbrs.tolist()))
    assert nbrs[0, 0] == 1 and nbrs[1, 0] == 0  # the duplicate is the nearest other prompt


def test_cascade_calibration_counts_the_check_and_meets_the_target() -> None:
    r = records(120)  # enough items for the target to be certified at delta 0.1
    result = calibrate_cascade(r, objective=Objective.quality("0.95"), escalate="large")
    assert result.met and result.cascade.escalate == "large"
    summary = result.train.summary
    # Synthetic answers: right is "A" and each tier's wrong answer differs, so the answer and check
    # agree exactly when both are right; the check's cost is always paid.
    paid_check = sum(r.cost_usd(i, result.cascade.check) for i in range(len(r)))
    assert summary.cost_usd is not None and summary.cost_usd > paid_check
    assert summary.accuracy >= 0.95
    assert np.isclose(result.chosen.cost, float(summary.cost_usd))
