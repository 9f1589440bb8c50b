"""Calibrate cascades on a training split: a cheap answer, a cheap check, escalation when they disagree.

Two kinds, both judged only on recorded outcomes (the check's cost counts):

* ``calibrate_cascade``: every prompt goes through the cascade; the sweep
  picks the answer and check models.
* ``calibrate_routed_cascade``: the learned router decides first; the prompts it
  sends to the escalation tier with only a small predicted gain over the
  cascade's answer tier go through the cascade instead (gain <= ``band``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import permutations
from typing import Any

from ..router._cascade import Cascade
from ..router._deps import require_numpy
from ._calibrate import reference_of, walk_many
from ._objective import Choice, CurvePoint, Objective, Reference, certified
from ._policies import PolicyResult, agreement, cascaded
from ._records import RecordSet


@dataclass(frozen=True)
class CascadeCalibration:
    """The chosen cascade, its parameters, the sweep behind it and its training-split result."""

    cascade: Cascade
    params: dict[str, Any]
    curve: tuple[CurvePoint, ...]
    chosen: CurvePoint
    met: bool
    train: PolicyResult
    reference: PolicyResult
    choice: Choice | None = None
    """The chosen cascade's confidence certificate."""
    objective: Objective | None = None


def _paths(records: RecordSet, cascade: Cascade) -> tuple[Any, Any]:
    """Per prompt, the cascade's verdict and float cost when every prompt goes through it."""
    np = require_numpy()
    a, b, e = (records.column(m) for m in (cascade.answer, cascade.check, cascade.escalate))
    agree = np.array(agreement(records, cascade))
    correct = np.where(agree, records.correct[:, a], records.correct[:, e])
    cost = records.cost[:, a] + records.cost[:, b] + np.where(agree, 0.0, records.cost[:, e])
    return correct, cost


def _candidates(records: RecordSet, escalate: str, answer: Sequence[str] | None) -> list[Cascade]:
    pool = list(answer) if answer is not None else [m for m in records.models if m != escalate]
    return [Cascade(a, b, escalate) for a, b in permutations(pool, 2)]


def calibrate_cascade(
    records: RecordSet, *, objective: Objective, escalate: str | None = None, models: Sequence[str] | None = None
) -> CascadeCalibration:
    """Choose the answer and check models (from ``models``, default all others) by ``objective``."""
    reference = reference_of(records, objective)
    top = escalate or reference.name
    cascades = _candidates(records, top, models)
    ref = Reference.of(records, objective)
    curve = []
    for i, c in enumerate(cascades):  # no knob orders them: each is its own chain (Bonferroni)
        correct, cost = _paths(records, c)
        curve.append(ref.point(correct, cost, {"cascade": i}, i))
    picked = certified(curve, objective, reference.summary.accuracy, float(reference.summary.cost_usd or 0))
    chosen, met = picked.point, picked.met
    cascade = cascades[chosen.params["cascade"]]
    train = cascaded(records, "cascade", cascade, [True] * len(records), list(records.models[:1]) * len(records))
    params = {"answer": cascade.answer, "check": cascade.check, "escalate": cascade.escalate}
    return CascadeCalibration(cascade, params, tuple(curve), chosen, met, train, reference, picked, objective)


def calibrate_routed_cascade(
    records: RecordSet,
    *,
    scores: Any,
    accuracy: Any,
    thresholds: Sequence[Sequence[float]],
    objective: Objective,
    models: Sequence[str] | None = None,
    bands: Sequence[float] = (-1.0, 0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 2.0),
    max_cascades: int = 8,
) -> CascadeCalibration:
    """Sweep router thresholds x cascades x gain bands on leave-one-out router ``scores`` and ``accuracy``.

    ``scores`` and ``accuracy`` are the learned scorer's escalation scores and
    predicted per-tier accuracy for the training prompts (tiers = ``records.models``);
    the escalation tier is the deepest. Only the ``max_cascades`` cascades
    that do best on their own are tried, to keep the sweep small.
    """
    np = require_numpy()
    reference = reference_of(records, objective)
    top = records.models[-1]
    ref_acc, ref_cost = reference.summary.accuracy, float(reference.summary.cost_usd or 0)
    alone = []
    for c in _candidates(records, top, models):
        correct, cost = _paths(records, c)
        alone.append((float(cost.sum()) / max(ref_cost, 1e-12) - float(correct.mean()) / max(ref_acc, 1e-12), c))
    # The best cascades on their own: most accuracy for the least cost (in units of the reference).
    cascades = [c for _, c in sorted(alone, key=lambda x: (x[0], x[1].label))[:max_cascades]]
    rows = np.arange(len(records))
    ref = Reference.of(records, objective)
    curve = []
    for ti, t in enumerate(thresholds):
        choice = walk_many(scores, t)
        base_correct, base_cost = records.correct[rows, choice], records.cost[rows, choice]
        to_top = choice == len(records.models) - 1
        for ci, c in enumerate(cascades):
            c_correct, c_cost = _paths(records, c)
            gain = accuracy[:, -1] - accuracy[:, records.column(c.answer)]
            for band in bands:  # a chain per (thresholds, cascade): the narrowest band escalates most
                use = to_top & (gain <= band)
                correct = np.where(use, c_correct, base_correct)
                cost = np.where(use, c_cost, base_cost)
                curve.append(ref.point(correct, cost, {"t": ti, "cascade": ci, "band": band},
                                       ti * len(cascades) + ci))
    picked = certified(curve, objective, ref_acc, ref_cost)
    chosen, met = picked.point, picked.met
    cascade = cascades[chosen.params["cascade"]]
    params = {"answer": cascade.answer, "check": cascade.check, "escalate": cascade.escalate,
              "thresholds": list(thresholds[chosen.params["t"]]), "band": chosen.params["band"]}
    train = apply_routed_cascade(records, scores, accuracy, cascade, params)
    return CascadeCalibration(cascade, params, tuple(curve), chosen, met, train, reference, picked, objective)


def apply_routed_cascade(
    records: RecordSet, scores: Any, accuracy: Any, cascade: Cascade, params: dict[str, Any],
    name: str = "router + cascade",
) -> PolicyResult:
    """Replay a calibrated router + cascade on ``records`` given the learned scorer's scores and accuracy."""
    choice = walk_many(scores, params["thresholds"])
    gain = accuracy[:, -1] - accuracy[:, records.column(cascade.answer)]
    use = (choice == len(records.models) - 1) & (gain <= params["band"])
    return cascaded(records, name, cascade, [bool(u) for u in use], [records.models[int(c)] for c in choice],
                    {k: str(v) for k, v in params.items()})
