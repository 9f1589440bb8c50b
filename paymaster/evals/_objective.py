"""What calibration aims for, and how a setting is chosen from a swept curve."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from ..errors import ConfigurationError
from ._records import RecordSet


@dataclass(frozen=True, slots=True)
class Objective:
    """Either the cheapest setting whose accuracy reaches ``target`` x the reference's (``quality``),
    or the most accurate setting whose cost stays within ``target`` x the reference's (``cost``).

    The reference is a model of the records; by default the most accurate one on the training split.
    """

    kind: Literal["quality", "cost"]
    target: Decimal
    reference: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("quality", "cost"):
            raise ConfigurationError(f"objective kind must be 'quality' or 'cost', got {self.kind!r}")
        if not (self.target.is_finite() and self.target > 0):
            raise ConfigurationError(f"objective target must be a positive share such as 0.95, got {self.target}")

    @classmethod
    def quality(cls, target: str | Decimal = "0.95", reference: str | None = None) -> Objective:
        """Cheapest setting with at least ``target`` of the reference's accuracy."""
        return cls("quality", Decimal(target), reference)

    @classmethod
    def cost(cls, target: str | Decimal = "0.10", reference: str | None = None) -> Objective:
        """Most accurate setting costing at most ``target`` of the reference's cost."""
        return cls("cost", Decimal(target), reference)

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
        return {"kind": self.kind, "target": str(self.target), "reference": reference}


@dataclass(frozen=True)
class CurvePoint:
    """One swept setting and what it scored on the training split (cost in float dollars, for sweeping)."""

    accuracy: float
    cost: float
    params: Mapping[str, Any] = field(default_factory=dict)


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


def pareto(points: Sequence[CurvePoint]) -> list[CurvePoint]:
    """The points no other point beats on both cost and accuracy, cheapest first."""
    ranked = sorted(points, key=lambda p: (p.cost, -p.accuracy))
    front: list[CurvePoint] = []
    for p in ranked:
        if not front or p.accuracy > front[-1].accuracy:
            front.append(p)
    return front
