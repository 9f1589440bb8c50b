"""Record a golden set on every tier, then calibrate from the recording: routing tuned on your own tasks.

``record_tiers`` runs each item once per tier (the agent's routes forced to
that tier) and keeps, per item and tier, the output, the verdict and the
ledger's cost: a replay file whose "models" are tier names. ``calibrate_file``
turns such a file (or any replay file) into a thresholds file.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ..planners._plan import Complexity
from ..pricing import PriceBook
from ..providers._replay import RecordedOutcome, RecordedPrompt, ReplayProvider, load_recordings
from ..router import TierTable
from ..router._knn import focus, learn_boilerplate, make_embedder
from ..router._prices import RoutingWarning, assumed_prices, list_price, price_order
from ..runtime import Agent, Budget, Runtime, TaskStatus
from ._calibrate import Calibration, calibrate_knn, calibrate_length
from ._cascade import CascadeCalibration, calibrate_cascade
from ._golden import GoldenItem
from ._objective import Objective
from ._policyfile import write_cascade_policy, write_utility_policy
from ._predict import UtilityCalibration, calibrate_utility
from ._records import RecordSet
from ._run import ItemResult, run_item

STOPPED_TAG = "budget_stopped:"


def pinned(agent: type[Agent], tier: str) -> type[Agent]:
    """A subclass of ``agent`` whose every complexity routes to ``tier`` (same name, so the same ledger rows)."""
    routes = dict.fromkeys(Complexity, tier)
    return type(f"{agent.__name__}On_{tier.replace('-', '_').replace('.', '_')}", (agent,), {"routes": routes})


async def record_tiers(
    runtime: Runtime,
    agent: type[Agent],
    items: Sequence[GoldenItem],
    *,
    tiers: Sequence[str] | None = None,
    tenant: str = "eval",
    replay: ReplayProvider | None = None,
    on_result: Callable[[str, ItemResult], None] | None = None,
    budget: Budget | None = None,
) -> list[RecordedPrompt]:
    """Run every item on every tier (cheapest first); return the recordings, keyed by tier name.

    An item stopped by a budget cap on a tier is tagged ``budget_stopped:TIER``
    so that calibration can tell a capped tier from a cheap one.
    """
    names = list(tiers) if tiers is not None else [t.name for t in runtime.tiers.tiers]
    for name in names:
        runtime.tiers.get(name)  # unknown names fail before anything is spent
    variants = {name: pinned(agent, name) for name in names}
    out = []
    for item in items:
        outcomes = {}
        stopped: list[str] = []
        for name in names:
            result = await run_item(runtime, variants[name], item, tenant=tenant, tags={"tier": name}, replay=replay,
                                    budget=budget)
            if result.cost_usd is None:
                raise ConfigurationError(
                    f"item {item.id!r} on tier {name!r} has no known cost (a price is missing); add prices for "
                    "the tier's model so that the recording can be calibrated on"
                )
            outcomes[name] = RecordedOutcome(response=result.output, correct=result.correct, cost_usd=result.cost_usd)
            if result.status is TaskStatus.BUDGET_EXCEEDED:
                stopped.append(f"{STOPPED_TAG}{name}")  # neither its cost nor its verdict is the tier's
            if on_result is not None:
                on_result(name, result)
        out.append(RecordedPrompt(id=item.id, prompt=item.input, outcomes=outcomes, task_type=item.task_type,
                                  tags=tuple(stopped)))
    return out


def stopped_tiers(prompts: Sequence[RecordedPrompt]) -> dict[str, int]:
    """How many recorded prompts each tier stopped at a budget cap on (from ``record_tiers``'s tags)."""
    counts: dict[str, int] = {}
    for prompt in prompts:
        for tag in prompt.tags:
            if tag.startswith(STOPPED_TAG):
                counts[tag[len(STOPPED_TAG):]] = counts.get(tag[len(STOPPED_TAG):], 0) + 1
    return counts


def ladder(
    prompts: Sequence[RecordedPrompt], tiers: Sequence[str] | None, table: TierTable | None, prices: PriceBook | None,
) -> tuple[list[str] | None, list[str]]:
    """The tiers to calibrate over, cheapest first by list price, and warnings about what was left out.

    A tier stopped by a budget cap on most items is left out: its recorded
    cost and verdicts measure the cap, not the tier. Tiers given explicitly
    keep the order given; others are ordered by the price book (recorded cost
    only when a price is unknown, which is said).
    """
    notes = []
    recorded = sorted(set(prompts[0].outcomes).intersection(*(p.outcomes for p in prompts)))
    names = list(tiers) if tiers is not None else recorded
    stopped = stopped_tiers(prompts)
    for name in list(names):
        if stopped.get(name, 0) * 2 > len(prompts):
            names.remove(name)
            notes.append(f"tier {name!r} left out: {stopped[name]} of {len(prompts)} items stopped at a budget cap, "
                         "so its cost and quality were not measured; record again with a larger eval budget "
                         "(paymaster eval --record ... --budget-usd)")
    if tiers is not None:
        return names, notes
    table = table or TierTable()
    order = price_order(names, table, prices or PriceBook())
    if order is None:
        unknown = [n for n in names if list_price(table, n, prices or PriceBook()) is None]
        notes.append(f"no list price for {unknown} in the tier table and price book (pass --config): tiers "
                     "ordered by their recorded cost instead")
        mean = {n: sum(p.outcomes[n].cost_usd for p in prompts) / len(prompts) for n in names}
        return sorted(names, key=lambda n: (mean[n], n)), notes
    return order, notes


def calibrate_file(
    path: str | Path,
    *,
    objective: Objective,
    scorer: str = "knn",
    embedder: str = "hashing-1024",
    tiers: Sequence[str] | None = None,
    table: TierTable | None = None,
    prices: PriceBook | None = None,
    **options: Any,
) -> Calibration:
    """Calibrate a score router on a replay file (e.g. written by ``record_tiers``); ``scorer`` is knn or length.

    Tiers are ordered by list price from ``table`` and ``prices`` (defaults:
    the default tiers and price book); a tier stopped by caps on most items is
    left out. Both are reported as ``RoutingWarning``s.
    """
    records = prepare(path, tiers, table, prices)
    calibration = _calibrate(records, objective, scorer, embedder, options)
    assumed = assumed_prices(calibration.tiers, table or TierTable(), prices or PriceBook())
    return dataclasses.replace(calibration, prices=assumed)


def prepare(
    path: str | Path, tiers: Sequence[str] | None, table: TierTable | None, prices: PriceBook | None
) -> RecordSet:
    """A replay file's records over the tiers to calibrate (see ``ladder``); what was left out is warned about."""
    prompts = load_recordings(path)
    names, notes = ladder(prompts, tiers, table, prices)
    for note in notes:
        warnings.warn(note, RoutingWarning, stacklevel=3)
    records = RecordSet.build(prompts, names)
    if len(records.models) < 2:
        left_out = "".join(f"; {n}" for n in notes if "left out" in n)
        raise ConfigurationError(f"{path}: calibration needs recordings of at least two tiers or models{left_out}")
    return records


def calibrate_policy_file(
    path: str | Path,
    out: str | Path,
    *,
    router: str,
    objective: Objective,
    embedder: str = "hashing-1024",
    tiers: Sequence[str] | None = None,
    table: TierTable | None = None,
    prices: PriceBook | None = None,
) -> tuple[Path, UtilityCalibration | CascadeCalibration]:
    """Calibrate the utility router (``router="utility"``) or a cascade on a replay file; write the policy file."""
    records = prepare(path, tiers, table, prices)
    assumed = assumed_prices(records.models, table or TierTable(), prices or PriceBook())
    if router == "cascade":
        cascade = calibrate_cascade(records, objective=objective)
        return write_cascade_policy(cascade, out, prices=assumed), cascade
    if router != "utility":
        raise ConfigurationError(f"router must be 'score', 'utility' or 'cascade', got {router!r}")
    boilerplate = learn_boilerplate(records.texts)
    vectors = make_embedder(embedder).encode([focus(t, frozenset(boilerplate)) for t in records.texts])
    utility = calibrate_utility(records, vectors, objective=objective, k=min(160, len(records) - 1),
                                prior_weight=min(10.0, len(records) / 4), boilerplate=boilerplate)
    return write_utility_policy(utility, out, embedder=embedder, prices=assumed), utility


def _calibrate(
    records: RecordSet, objective: Objective, scorer: str, embedder: str, options: dict[str, Any]
) -> Calibration:
    if scorer == "length":
        return calibrate_length(records, objective=objective, **options)
    if scorer != "knn":
        raise ConfigurationError(f"scorer must be 'knn' or 'length', got {scorer!r}")
    boilerplate = learn_boilerplate(records.texts)
    vectors = make_embedder(embedder).encode([focus(t, frozenset(boilerplate)) for t in records.texts])
    return calibrate_knn(records, vectors, embedder=embedder, objective=objective, boilerplate=boilerplate,
                         **options)
