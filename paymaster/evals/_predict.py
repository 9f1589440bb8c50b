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
from ._calibrate import reference_of
from ._deps import require_numpy
from ._objective import Choice, CurvePoint, Objective, Reference, certified
from ._policies import Cascade, PolicyResult, _result, answer_key
from ._records import RecordSet

Option = str | Cascade
"""A model name, or a cascade."""

_PRICES: tuple[float, ...] = (0.0, *(10 ** (e / 40) for e in range(-120, 121)))


def option_label(option: Option) -> str:
    """How an option is named in reports and routes."""
    return option if isinstance(option, str) else option.label


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
class UtilityRouter:
    """Training prompts' embeddings, task types and the candidate options' recorded outcomes, plus the price."""

    options: tuple[Option, ...]
    embeddings: Any
    task_types: tuple[str, ...]
    correct: Any
    cost: Any
    k: int
    prior_weight: float
    price: float
    unit_cost: float
    """The reference model's mean cost per training prompt: costs are counted in this unit."""

    def predict(self, vectors: Any, task_types: Sequence[str], *, loo: bool = False) -> tuple[Any, Any]:
        """Predicted accuracy and cost of every option for prompts with these embeddings and task types.

        With ``loo`` the prompts are the training prompts themselves, each scored without itself.
        """
        np = require_numpy()
        if len(vectors) != len(task_types):
            raise ConfigurationError(f"{len(vectors)} embeddings for {len(task_types)} task types")
        train_types = np.array(self.task_types, dtype=object)
        query_types = np.array(list(task_types), dtype=object)
        accuracy = np.zeros((len(vectors), len(self.options)))
        cost = np.zeros_like(accuracy)
        for t in sorted(set(task_types)):
            q = np.flatnonzero(query_types == t)
            base = np.flatnonzero(train_types == t)
            if len(base) < 2:  # an unseen task type: every training prompt is a neighbour
                base = np.arange(len(train_types))
            sims = np.asarray(vectors[q], dtype=np.float64) @ np.asarray(self.embeddings[base], dtype=np.float64).T
            if loo:
                sims[q[:, None] == base[None, :]] = -np.inf
            k = max(1, min(self.k, len(base) - (1 if loo else 0)))
            nbrs = base[np.argsort(-sims, axis=1, kind="stable")[:, :k]]
            prior = self.correct[base].mean(axis=0)
            accuracy[q] = (self.correct[nbrs].sum(axis=1) + self.prior_weight * prior) / (k + self.prior_weight)
            cost[q] = self.cost[nbrs].mean(axis=1)
        return accuracy, cost

    def choose(self, accuracy: Any, cost: Any, price: float | None = None) -> Any:
        """Per prompt, the column of the option with the highest predicted utility (ties: the lower column)."""
        np = require_numpy()
        p = self.price if price is None else price
        return np.argmax(accuracy - p * cost / max(self.unit_cost, 1e-12), axis=1)

    def route(self, vectors: Any, task_types: Sequence[str]) -> list[Option]:
        """The option chosen for each prompt."""
        accuracy, cost = self.predict(vectors, task_types)
        return [self.options[int(j)] for j in self.choose(accuracy, cost)]

    def describe(self) -> str:
        """The router in one line."""
        return (f"{len(self.options)} options (models and cascades on a task type's Pareto front), k={self.k}, "
                f"prior weight {self.prior_weight}, price of accuracy {self.price:.4g}")


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


def calibrate_utility(
    records: RecordSet,
    embeddings: Any,
    *,
    objective: Objective,
    k: int = 160,
    prior_weight: float = 10.0,
    options: Sequence[Option] | None = None,
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
        prior_weight=prior_weight, price=0.0, unit_cost=ref_cost / len(records),
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
        return UtilityCalibration(router, tuple(curve), picked.point, picked.met, reference, reference, picked)
    router = UtilityRouter(**{**router.__dict__, "price": picked.point.params["price"]})
    choice = router.choose(accuracy, predicted_cost)
    train = replay(records, [router.options[int(j)] for j in choice], "utility router (leave-one-out)")
    return UtilityCalibration(router, tuple(curve), picked.point, picked.met, train, reference, picked)


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
