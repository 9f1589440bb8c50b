"""Targets with a confidence level: what is certified holds on unseen prompts at least 1 - delta of the time."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from paymaster.router._confidence import Paired, certify, passes, share_bound, z_value


def draws(n: int, p_ref: float, p_router: float, rng: random.Random) -> Paired:
    """n prompts; the router is right only where the reference is (a cheaper tier), with the given accuracies."""
    ref = [rng.random() < p_ref for _ in range(n)]
    keep = p_router / p_ref
    router = [r and rng.random() < keep for r in ref]
    return Paired.of([float(x) for x in router], [float(y) for y in ref])


def test_a_point_estimate_at_the_target_is_not_enough_on_few_prompts_but_is_on_many() -> None:
    # Of 40 prompts the reference gets 38 right, the router 37 of those: 97.4% of the reference.
    router, ref = [1.0] * 37 + [0.0] * 3, [1.0] * 38 + [0.0] * 2
    few = Paired.of(router, ref)
    many = Paired.of(router * 500, ref * 500)  # the same proportions on 20,000 prompts
    z = z_value(0.1)
    assert few.ratio > 0.95 and many.ratio > 0.95
    assert not passes(few, 0.95, "lower", z, None)
    assert passes(many, 0.95, "lower", z, None)
    # The bound sits below the estimate, and is exactly where passing stops.
    bound = share_bound(many, "lower", z, None)
    assert 0.95 < bound < many.ratio
    assert passes(many, bound - 1e-6, "lower", z, None) and not passes(many, bound + 1e-6, "lower", z, None)


def test_a_router_truly_below_the_target_is_certified_at_most_delta_of_the_time() -> None:
    # True share 0.94 < 0.95: every certification is an error. At delta = 0.1 at most ~10% may pass.
    rng = random.Random(1)
    wrongly = sum(passes(draws(2000, 0.85, 0.85 * 0.94, rng), 0.95, "lower", z_value(0.1), None) for _ in range(300))
    assert wrongly <= 0.1 * 300
    # A router truly at 0.97 is certified most of the time: the bound is not vacuous.
    rng = random.Random(2)
    rightly = sum(passes(draws(2000, 0.85, 0.85 * 0.97, rng), 0.95, "lower", z_value(0.1), None) for _ in range(100))
    assert rightly >= 80


def test_fixed_sequence_stops_at_the_first_setting_that_fails() -> None:
    good = Paired.of([1.0] * 99 + [0.0], [1.0] * 100)  # 99% of the reference
    bad = Paired.of([1.0] * 50 + [0.0] * 50, [1.0] * 100)  # 50%
    [row] = certify([[good, bad, good]], 0.95, "lower", 0.1)
    assert [c.passed for c in row] == [True, False, False]  # the third is as good as the first, but not tested
    # Two chains split delta (Bonferroni): each test is stricter than with one chain.
    assert z_value(0.05) > z_value(0.1)
    rows = certify([[good], [bad]], 0.95, "lower", 0.1)
    assert [r[0].passed for r in rows] == [True, False]


def test_cost_targets_use_an_upper_bound() -> None:
    rng = random.Random(3)
    ref = [rng.uniform(0.5, 1.5) for _ in range(500)]
    cheap = [0.08 * y * rng.uniform(0.5, 1.5) for y in ref]  # about 8% of the reference's cost
    stats = Paired.of(cheap, ref)
    [[cert]] = certify([[stats]], 0.10, "upper", 0.1)
    assert cert.passed and cert.estimate < cert.bound <= 0.10
    [[tight]] = certify([[stats]], stats.ratio, "upper", 0.1)
    assert not tight.passed  # the estimate itself is not certified: the bound is above it


def test_a_finite_horizon_asks_for_more_margin() -> None:
    stats = draws(3000, 0.9, 0.9 * 0.975, random.Random(4))
    z = z_value(0.1)
    population = share_bound(stats, "lower", z, None)
    batch = share_bound(stats, "lower", z, 500)
    assert batch < population < stats.ratio
    with pytest.raises(ValueError, match="alpha"):
        z_value(0)


def test_calibration_falls_back_to_the_reference_when_nothing_cheaper_is_certified() -> None:
    pytest.importorskip("numpy", reason="calibration needs the evals extra")
    from paymaster.evals import HashingEmbedder, Objective, RecordSet, calibrate_length
    from paymaster.evals._predict import calibrate_utility
    from paymaster.providers._replay import RecordedOutcome, RecordedPrompt

    rate = {"small": Decimal("0.000001"), "medium": Decimal("0.000005"), "large": Decimal("0.00002")}
    prompts = []
    for i in range(9):  # nine items: too few to certify a cheaper tier
        hard = i % 3 == 0
        text = f"q{i} " + ("prove the lemma " * 8 if hard else "sunny")
        right = {"small": not hard, "medium": not hard or i == 3, "large": True}
        prompts.append(RecordedPrompt(id=f"q{i}", prompt=text, outcomes={
            t: RecordedOutcome("A" if right[t] else t[0], right[t], rate[t] * len(text.split())) for t in rate}))
    records = RecordSet.build(prompts)
    length = calibrate_length(records, objective=Objective.quality("0.95"), scale_words=10)
    assert length.choice is not None and length.choice.fallback
    assert length.tiers == ("large",) and length.thresholds == () and length.met
    point = calibrate_length(records, objective=Objective.quality("0.95", delta=None), scale_words=10)
    assert point.tiers == ("small", "medium", "large")  # the point estimate alone would have trusted them
    utility = calibrate_utility(records, HashingEmbedder(64).encode(records.texts),
                                objective=Objective.quality("0.95"), k=3)
    assert utility.choice is not None and utility.choice.fallback and utility.router.options == ("large",)
