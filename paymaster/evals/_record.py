"""Record a golden set on every tier, then calibrate from the recording: routing tuned on your own tasks.

``record_tiers`` runs each item once per tier (the agent's routes forced to
that tier) and keeps, per item and tier, the output, the verdict and the
ledger's cost: a replay file whose "models" are tier names. ``calibrate_file``
turns such a file (or any replay file) into a thresholds file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ..planners._plan import Complexity
from ..providers._replay import RecordedOutcome, RecordedPrompt, ReplayProvider, load_recordings
from ..runtime import Agent, Runtime
from ._calibrate import Calibration, calibrate_knn, calibrate_length
from ._golden import GoldenItem
from ._knn import focus, learn_boilerplate, make_embedder
from ._objective import Objective
from ._records import RecordSet
from ._run import ItemResult, run_item


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
) -> list[RecordedPrompt]:
    """Run every item on every tier (cheapest first); return the recordings, keyed by tier name."""
    names = list(tiers) if tiers is not None else [t.name for t in runtime.tiers.tiers]
    for name in names:
        runtime.tiers.get(name)  # unknown names fail before anything is spent
    variants = {name: pinned(agent, name) for name in names}
    out = []
    for item in items:
        outcomes = {}
        for name in names:
            result = await run_item(runtime, variants[name], item, tenant=tenant, tags={"tier": name}, replay=replay)
            if result.cost_usd is None:
                raise ConfigurationError(
                    f"item {item.id!r} on tier {name!r} has no known cost (a price is missing); add prices for "
                    "the tier's model so that the recording can be calibrated on"
                )
            outcomes[name] = RecordedOutcome(response=result.output, correct=result.correct, cost_usd=result.cost_usd)
            if on_result is not None:
                on_result(name, result)
        out.append(RecordedPrompt(id=item.id, prompt=item.input, outcomes=outcomes, task_type=item.task_type))
    return out


def calibrate_file(
    path: str | Path,
    *,
    objective: Objective,
    scorer: str = "knn",
    embedder: str = "hashing-1024",
    tiers: Sequence[str] | None = None,
    **options: Any,
) -> Calibration:
    """Calibrate a score router on a replay file (e.g. written by ``record_tiers``); ``scorer`` is knn or length."""
    records = RecordSet.build(load_recordings(path), tiers)
    if len(records.models) < 2:
        raise ConfigurationError(f"{path}: calibration needs recordings of at least two tiers or models")
    if scorer == "length":
        return calibrate_length(records, objective=objective, **options)
    if scorer != "knn":
        raise ConfigurationError(f"scorer must be 'knn' or 'length', got {scorer!r}")
    boilerplate = learn_boilerplate(records.texts)
    vectors = make_embedder(embedder).encode([focus(t, frozenset(boilerplate)) for t in records.texts])
    return calibrate_knn(records, vectors, embedder=embedder, objective=objective, boilerplate=boilerplate,
                         **options)
