"""Calibration guards: tiers by list price, capped tiers left out, and stale prices noticed at load time."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

pytest.importorskip("numpy", reason="calibration needs the evals extra")

from paymaster import Runtime
from paymaster.evals import Objective, calibrate_file
from paymaster.pricing import ModelPrices, PriceBook, Rates
from paymaster.providers import ScriptedProvider
from paymaster.providers._replay import RecordedOutcome, RecordedPrompt, dump_recordings
from paymaster.router import LengthScorerSpec, Thresholds, TierTable, save_thresholds
from paymaster.router._prices import RoutingWarning, assumed_prices

# Recorded costs say "deep" is cheapest (its calls were refused at a cap, so they cost nothing).
COSTS = {"fast": Decimal("0.001"), "balanced": Decimal("0.004"), "deep": Decimal("0")}


def recording(path: Path, stopped: int, n: int = 12) -> Path:
    prompts = []
    for i in range(n):
        hard = i % 2 == 0
        outcomes = {
            "fast": RecordedOutcome("A" if not hard else "C", not hard, COSTS["fast"] * (i + 1)),
            "balanced": RecordedOutcome("A", True, COSTS["balanced"] * (i + 1)),
            "deep": RecordedOutcome("" if i < stopped else "A", i >= stopped, COSTS["deep"]),
        }
        tags = ("budget_stopped:deep",) if i < stopped else ()
        words = "prove the theorem " * 10 if hard else "sunny"
        prompts.append(RecordedPrompt(id=f"q{i}", prompt=f"q{i} {words}", outcomes=outcomes, tags=tags))
    dump_recordings(prompts, path)
    return path


def test_a_tier_stopped_on_most_items_is_left_out_with_a_warning_naming_it(tmp_path: Path) -> None:
    path = recording(tmp_path / "r.jsonl", stopped=12)
    with pytest.warns(RoutingWarning, match="tier 'deep' left out: 12 of 12 items stopped at a budget cap"):
        calibration = calibrate_file(path, objective=Objective.quality(delta=None), scorer="length")
    assert calibration.models == ("fast", "balanced")


def test_tiers_are_ordered_by_list_price_not_by_recorded_cost(tmp_path: Path) -> None:
    path = recording(tmp_path / "r.jsonl", stopped=0)  # deep recorded $0 on every item, yet it is the dearest
    calibration = calibrate_file(path, objective=Objective.quality(delta=None), scorer="length")
    assert calibration.models == ("fast", "balanced", "deep")
    written = calibration.to_thresholds()
    assert set(written.prices) == {"fast", "balanced", "deep"}
    assert written.prices["deep"]["provider"] == "anthropic"


def test_the_runtime_warns_when_prices_changed_since_calibration(tmp_path: Path) -> None:
    table = TierTable()
    book = PriceBook()
    thresholds = Thresholds(scorer=LengthScorerSpec(), tiers=("fast", "deep"), thresholds=(0.5,),
                            prices=assumed_prices(["fast", "deep"], table, book))
    path = save_thresholds(thresholds, tmp_path / "t.json")
    with Runtime(ledger=tmp_path / "a.db", provider=ScriptedProvider(), router=path):
        pass  # the same prices: no warning (filterwarnings = error would fail this test)
    dearer = PriceBook({("openai", "gpt-4o-mini"): ModelPrices(
        "openai", "gpt-4o-mini", Rates(Decimal("0.2"), Decimal("0.8"), Decimal("0.1"), Decimal("0.2")))})
    drift = r"tier 'fast': calibrated at gpt-4o-mini \$0.15/\$0.6 per Mtok, now gpt-4o-mini \$0.2/\$0.8"
    with pytest.warns(RoutingWarning, match=drift), \
            Runtime(ledger=tmp_path / "b.db", provider=ScriptedProvider(), router=path, prices=dearer):
        pass
