"""Expected-utility routing over single models and cheap-check cascades, calibrated on recorded outcomes.

Every *option* is either one model or a cascade (an answer model, one check
model, and an escalation model that answers only when the two disagree; the
check's cost counts). For a new prompt, its ``k`` nearest training prompts of
the same task type predict each option's accuracy (shrunk toward the option's
accuracy on that task type) and cost; the router takes the option with the
highest ``accuracy - price x cost / (reference model's mean cost)``. One knob,
the price of accuracy, is swept on the training split with leave-one-out
predictions and chosen by an ``Objective``.

Only options on some task type's cost-accuracy Pareto front (on the training
split) are candidates: a short list keeps the max over noisy predictions honest.
Nothing here draws a random number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import permutations
from typing import Any

from ..errors import ConfigurationError
from ..router._cascade import Cascade, answer_key
from ..router._deps import require_numpy
from ..router._utility import Option, UtilityRouter, option_label
from ._calibrate import reference_of
from ._objective import Choice, CurvePoint, Objective, Reference, certified
from ._policies import PolicyResult, _result
from ._records import RecordSet

__all__ = ["Option", "UtilityCalibration", "UtilityRouter", "calibrate_utility", "option_label", "replay"]

_PRICES: tuple[float, ...] = (0.0, *(10 ** (e / 40) for e in range(-120, 121)))


def all_options(models: Sequence[str]) -> list[Option]:
    """Every single model, then every cascade of three distinct models."""
    out: list[Option] = list(models)
    out += [Cascade(a, b, e) for a, b, e in permutations(models, 3)]
    return out


def outcomes(records: RecordSet, options: Sequence[Option]) -> tuple[Any, Any]:
    """Per prompt and option: whether the option's final answer was right, and its float cost."""
    np = require_numpy()
    keys = [[answer_key(records.response(i, m)) for m in records.models] for i in range(len(records))]
    keys_arr = np.array(keys, dtype=object).reshape(len(records), len(records.models))
    correct = np.zeros((len(records), len(options)))
    cost = np.zeros((len(records), len(options)))
    for j, o in enumerate(options):
        if isinstance(o, str):
            c = records.column(o)
            correct[:, j], cost[:, j] = records.correct[:, c], records.cost[:, c]
            continue
        a, b, e = (records.column(m) for m in (o.answer, o.check, o.escalate))
        agree = keys_arr[:, a] == keys_arr[:, b]
        correct[:, j] = np.where(agree, records.correct[:, a], records.correct[:, e])
        cost[:, j] = records.cost[:, a] + records.cost[:, b] + np.where(agree, 0.0, records.cost[:, e])
    return correct, cost


def pareto_options(task_types: Sequence[str], correct: Any, cost: Any) -> list[int]:
    """Columns on the cost-accuracy Pareto front of at least one task type (ties: the lower column)."""
    np = require_numpy()
    types = np.array(task_types, dtype=object)
    keep: set[int] = set()
    for t in sorted(set(task_types)):
        rows = types == t
        right, spent = correct[rows].sum(axis=0), cost[rows].sum(axis=0)
        best = -1.0
        for j in np.lexsort((np.arange(len(right)), -right, spent)):
            if right[j] > best:
                keep.add(int(j))
                best = float(right[j])
    return sorted(keep)


@dataclass(frozen=True)
class UtilityCalibration:
    """The calibrated router, the train sweep behind its price, and its leave-one-out training result."""

    router: UtilityRouter
    curve: tuple[CurvePoint, ...]
    chosen: CurvePoint
    met: bool
    train: PolicyResult
    reference: PolicyResult
    choice: Choice | None = None
    """The chosen price's confidence certificate, or the fallback to the reference alone."""
    objective: Objective | None = None


def calibrate_utility(
    records: RecordSet,
    embeddings: Any,
    *,
    objective: Objective,
    k: int = 160,
    prior_weight: float = 10.0,
    options: Sequence[Option] | None = None,
    boilerplate: Sequence[str] = (),
) -> UtilityCalibration:
    """Sweep the price of accuracy on leave-one-out predictions of ``records``; choose by ``objective``.

    ``embeddings`` are of the records' prompts (one row each, unit length).
    ``options`` defaults to every model and every three-model cascade, of
    which only the Pareto-efficient ones per task type are kept.
    """
    np = require_numpy()
    if len(embeddings) != len(records):
        raise ConfigurationError(f"{len(embeddings)} embeddings for {len(records)} prompts")
    if len(records) < 2:
        raise ConfigurationError("the utility router needs at least two recorded prompts")
    pool = list(options) if options is not None else all_options(records.models)
    correct, cost = outcomes(records, pool)
    keep = pareto_options(records.task_types, correct, cost)
    reference = reference_of(records, objective)
    ref_cost = float(reference.summary.cost_usd or 0)
    router = UtilityRouter(
        options=tuple(pool[j] for j in keep), embeddings=np.asarray(embeddings, dtype=np.float32),
        task_types=records.task_types, correct=correct[:, keep], cost=cost[:, keep], k=k,
        prior_weight=prior_weight, price=0.0, unit_cost=ref_cost / len(records), boilerplate=tuple(boilerplate),
    )
    accuracy, predicted_cost = router.predict(router.embeddings, records.task_types, loo=True)
    rows = np.arange(len(records))
    ref = Reference.of(records, objective)
    curve = []
    for price in _PRICES:  # one chain, from price 0 (the most accurate options) up: see certified()
        choice = router.choose(accuracy, predicted_cost, price)
        curve.append(ref.point(router.correct[rows, choice], router.cost[rows, choice], {"price": price}))
    picked = certified(curve, objective, reference.summary.accuracy, ref_cost, fallback=ref.alone())
    if picked.fallback:  # nothing cheaper is certified: the reference model answers everything
        j = records.column(reference.name)
        router = UtilityRouter(**{**router.__dict__, "options": (reference.name,), "correct": records.correct[:, [j]],
                                  "cost": records.cost[:, [j]]})
        return UtilityCalibration(router, tuple(curve), picked.point, picked.met, reference, reference, picked,
                                  objective)
    router = UtilityRouter(**{**router.__dict__, "price": picked.point.params["price"]})
    choice = router.choose(accuracy, predicted_cost)
    train = replay(records, [router.options[int(j)] for j in choice], "utility router (leave-one-out)")
    return UtilityCalibration(router, tuple(curve), picked.point, picked.met, train, reference, picked, objective)


def replay(records: RecordSet, choice: Sequence[Option], name: str = "utility router") -> PolicyResult:
    """Prompt i through option ``choice[i]``: exact recorded costs, a cascade's check included."""
    if len(choice) != len(records):
        raise ValueError(f"{len(choice)} choices for {len(records)} prompts")
    routes, correct, costs = [], [], []
    for i, o in enumerate(choice):
        if isinstance(o, str):
            routes.append(o)
            correct.append(bool(records.correct[i, records.column(o)]))
            costs.append(records.cost_usd(i, o))
            continue
        paid: Decimal = records.cost_usd(i, o.answer) + records.cost_usd(i, o.check)
        if answer_key(records.response(i, o.answer)) == answer_key(records.response(i, o.check)):
            routes.append(f"{o.answer} (checked)")
            correct.append(bool(records.correct[i, records.column(o.answer)]))
        else:
            routes.append(f"{o.escalate} (escalated)")
            correct.append(bool(records.correct[i, records.column(o.escalate)]))
            paid += records.cost_usd(i, o.escalate)
        costs.append(paid)
    return _result(records, name, routes, correct, costs)
