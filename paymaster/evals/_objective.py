"""What calibration aims for, and how a setting is chosen from a swept curve."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from ..errors import ConfigurationError
from ..router._confidence import Certificate, Paired, certify
from ._records import RecordSet


@dataclass(frozen=True, slots=True)
class Objective:
    """Either the cheapest setting whose accuracy reaches ``target`` x the reference's (``quality``),
    or the most accurate setting whose cost stays within ``target`` x the reference's (``cost``).

    The reference is a model of the records; by default the most accurate one on the training split.
    With ``delta`` (default 0.1) the target must hold with probability at least
    1 - delta on unseen prompts: a setting counts only when a confidence bound
    on the calibration records clears the target (see ``paymaster.router._confidence``).
    "Holds" is judged on a batch of ``horizon`` unseen prompts (default: as many
    as were calibrated on), which is what a user measuring them sees; a larger
    horizon asks less margin, a smaller one more. ``delta=None`` compares point
    estimates only.
    """

    kind: Literal["quality", "cost"]
    target: Decimal
    reference: str | None = None
    delta: float | None = 0.1
    horizon: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("quality", "cost"):
            raise ConfigurationError(f"objective kind must be 'quality' or 'cost', got {self.kind!r}")
        if not (self.target.is_finite() and self.target > 0):
            raise ConfigurationError(f"objective target must be a positive share such as 0.95, got {self.target}")
        if self.delta is not None and not 0 < self.delta < 1:
            raise ConfigurationError(f"delta is the chance the target may fail, in (0, 1), e.g. 0.1; got {self.delta}")
        if self.horizon is not None and self.horizon < 1:
            raise ConfigurationError(f"horizon is a number of future prompts >= 1, got {self.horizon}")

    @classmethod
    def quality(
        cls, target: str | Decimal = "0.95", reference: str | None = None, *, delta: float | None = 0.1,
        horizon: int | None = None,
    ) -> Objective:
        """Cheapest setting with at least ``target`` of the reference's accuracy (with confidence 1 - delta)."""
        return cls("quality", Decimal(target), reference, delta, horizon)

    @classmethod
    def cost(
        cls, target: str | Decimal = "0.10", reference: str | None = None, *, delta: float | None = 0.1,
        horizon: int | None = None,
    ) -> Objective:
        """Most accurate setting costing at most ``target`` of the reference's cost (with confidence 1 - delta)."""
        return cls("cost", Decimal(target), reference, delta, horizon)

    def reference_model(self, records: RecordSet) -> str:
        """The reference model: as given, else the most accurate (then cheapest) on ``records``."""
        if self.reference is not None:
            records.column(self.reference)
            return self.reference
        means = records.correct.mean(axis=0)
        best = max(range(len(records.models)), key=lambda j: (float(means[j]), -j))
        return records.models[best]

    def describe(self, reference: str) -> dict[str, str]:
        """The objective as it is written to a thresholds file."""
        out = {"kind": self.kind, "target": str(self.target), "reference": reference}
        if self.delta is not None:
            out["delta"] = str(self.delta)
        if self.horizon is not None:
            out["horizon"] = str(self.horizon)
        return out


@dataclass(frozen=True)
class CurvePoint:
    """One swept setting and what it scored on the training split (cost in float dollars, for sweeping)."""

    accuracy: float
    cost: float
    params: Mapping[str, Any] = field(default_factory=dict)
    chain: int = 0
    """Settings of one chain are tested in sweep order (most escalating first); see ``certified``."""
    correct: Paired | None = None
    """The setting's verdicts paired with the reference's, prompt by prompt (for the quality bound)."""
    spend: Paired | None = None
    """The setting's costs paired with the reference's (for the cost bound)."""


@dataclass(frozen=True)
class Choice:
    """The chosen setting, whether the objective is met, and its confidence certificate (None: point estimate)."""

    point: CurvePoint
    met: bool
    certificate: Certificate | None = None
    fallback: bool = False
    """True when no swept setting was certified and the strong tier alone was chosen."""

    def describe(self, objective: Objective) -> str:
        """The certificate in words: point estimate beside its bound."""
        c = self.certificate
        if c is None:
            return "point estimate only (delta=None)"
        what = "accuracy" if objective.kind == "quality" else "cost"
        side = "lower" if objective.kind == "quality" else "upper"
        conf = 1 - (objective.delta or 0)
        tail = " (nothing cheaper was certified: the strong tier alone)" if self.fallback else ""
        return (f"{what} {c.estimate:.1%} of the reference's, {side} {conf:.0%} bound {c.bound:.1%} "
                f"(target {float(objective.target):.1%}){tail}")


def choose(
    points: Sequence[CurvePoint], objective: Objective, reference_accuracy: float, reference_cost: float
) -> tuple[CurvePoint, bool]:
    """The setting the objective prefers, and whether it met the objective.

    Ties go to the better secondary measure, then to the earlier point, so the
    choice depends only on the points' order, never on chance.
    """
    if not points:
        raise ConfigurationError("nothing to choose from: the sweep produced no settings")
    order = range(len(points))
    if objective.kind == "quality":
        floor = float(objective.target) * reference_accuracy - 1e-12
        met = [i for i in order if points[i].accuracy >= floor]
        if met:
            return points[min(met, key=lambda i: (points[i].cost, -points[i].accuracy, i))], True
        return points[min(order, key=lambda i: (-points[i].accuracy, points[i].cost, i))], False
    ceiling = float(objective.target) * reference_cost + 1e-15
    met = [i for i in order if points[i].cost <= ceiling]
    if met:
        return points[min(met, key=lambda i: (-points[i].accuracy, points[i].cost, i))], True
    return points[min(order, key=lambda i: (points[i].cost, -points[i].accuracy, i))], False


def certified(
    points: Sequence[CurvePoint], objective: Objective, reference_accuracy: float, reference_cost: float,
    fallback: CurvePoint | None = None,
) -> Choice:
    """The setting the objective prefers among those whose target is certified at confidence 1 - delta.

    Quality: the cheapest certified setting (by training cost); when none is,
    ``fallback`` (the strong tier alone). Cost: the most accurate setting whose
    cost bound is within the target; when none is, the cheapest setting, not met.
    Points without paired statistics, or ``delta=None``, fall back to ``choose``.
    """
    given = [p.correct if objective.kind == "quality" else p.spend for p in points]
    stats = [s for s in given if s is not None]
    if objective.delta is None or not points or len(stats) != len(points):
        point, met = choose(points, objective, reference_accuracy, reference_cost)
        return Choice(point, met)
    side: Literal["lower", "upper"] = "lower" if objective.kind == "quality" else "upper"
    chains: dict[int, list[int]] = {}
    for i, p in enumerate(points):
        chains.setdefault(p.chain, []).append(i)
    # Quality: test the most escalating (likeliest to pass) settings first; cost: the cheapest first.
    order = [chains[c] if side == "lower" else chains[c][::-1] for c in sorted(chains)]
    horizon = objective.horizon or stats[0].n
    certs = certify([[stats[i] for i in chain] for chain in order], float(objective.target), side,
                    objective.delta, horizon)
    by_index = {i: c for chain, row in zip(order, certs, strict=True) for i, c in zip(chain, row, strict=True)}
    passed = [i for i in range(len(points)) if by_index[i].passed]
    if objective.kind == "quality":
        if passed:
            best = min(passed, key=lambda i: (points[i].cost, -points[i].accuracy, i))
            return Choice(points[best], True, by_index[best])
        if fallback is None or fallback.correct is None:
            point, _ = choose(points, objective, reference_accuracy, reference_cost)
            return Choice(point, False, by_index[points.index(point)])
        # The reference compared with itself: its share is 1, exactly and with certainty.
        return Choice(fallback, True, Certificate(1.0, 1.0, True), fallback=True)
    if passed:
        best = min(passed, key=lambda i: (-points[i].accuracy, points[i].cost, i))
        return Choice(points[best], True, by_index[best])
    cheapest = min(range(len(points)), key=lambda i: (points[i].cost, -points[i].accuracy, i))
    return Choice(points[cheapest], False, by_index[cheapest])


def pareto(points: Sequence[CurvePoint]) -> list[CurvePoint]:
    """The points no other point beats on both cost and accuracy, cheapest first."""
    ranked = sorted(points, key=lambda p: (p.cost, -p.accuracy))
    front: list[CurvePoint] = []
    for p in ranked:
        if not front or p.accuracy > front[-1].accuracy:
            front.append(p)
    return front


def paired(x: Any, y: Any) -> Paired:
    """Paired sums of two numpy vectors (a setting's per-prompt values and the reference's)."""
    from ..router._deps import require_numpy

    np = require_numpy()
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return Paired(len(a), float(a.sum()), float(b.sum()), float(a @ a), float(b @ b), float(a @ b))


@dataclass(frozen=True)
class Reference:
    """The reference's per-prompt verdicts and costs (float), which every swept setting is paired with."""

    correct: Any
    cost: Any

    @classmethod
    def of(cls, records: RecordSet, objective: Objective) -> Reference:
        """The reference model's columns of ``records``."""
        j = records.column(objective.reference_model(records))
        return cls(records.correct[:, j], records.cost[:, j])

    def point(self, correct: Any, cost: Any, params: Mapping[str, Any], chain: int = 0) -> CurvePoint:
        """A swept setting's curve point, with its verdicts and costs paired with the reference's."""
        return CurvePoint(float(correct.mean()), float(cost.sum()), params, chain,
                          paired(correct, self.correct), paired(cost, self.cost))

    def alone(self) -> CurvePoint:
        """The strong tier alone: what quality calibration falls back to when nothing cheaper is certified."""
        return self.point(self.correct, self.cost, {"fallback": True}, -1)
