"""Accuracy, cost and cost per successful outcome, overall and split by tier or by task type and model."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Summary:
    """How many items, how many right, and what they cost (``None`` when any cost is unknown)."""

    items: int
    correct: int
    cost_usd: Decimal | None

    @property
    def accuracy(self) -> float:
        """Share of items answered correctly (0 for no items)."""
        return self.correct / self.items if self.items else 0.0

    @property
    def cost_per_success_usd(self) -> Decimal | None:
        """Total cost divided by the number of correct items; ``None`` if unknown or nothing succeeded."""
        if self.cost_usd is None or not self.correct:
            return None
        return self.cost_usd / self.correct

    @property
    def mean_cost_usd(self) -> Decimal | None:
        """Cost per item."""
        if self.cost_usd is None or not self.items:
            return None
        return self.cost_usd / self.items


def summarise(correct: Iterable[bool], costs: Iterable[Decimal | None]) -> Summary:
    """Summarise paired verdicts and costs."""
    flags, amounts = list(correct), list(costs)
    if len(flags) != len(amounts):
        raise ValueError(f"{len(flags)} verdicts but {len(amounts)} costs")
    known = [c for c in amounts if c is not None]
    total = sum(known, Decimal(0)) if len(known) == len(amounts) else None
    return Summary(items=len(flags), correct=sum(flags), cost_usd=total)


def split_by(
    labels: Sequence[str], correct: Sequence[bool], costs: Sequence[Decimal | None]
) -> list[tuple[str, Summary]]:
    """One summary per label (e.g. the tier that answered), labels in first-seen order."""
    groups: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(label, []).append(i)
    return [
        (label, summarise((correct[i] for i in rows), (costs[i] for i in rows)))
        for label, rows in groups.items()
    ]


@dataclass(frozen=True, slots=True)
class SelectionRow:
    """Model selection analytics: how a model did on the items of one task type it was chosen for."""

    task_type: str
    model: str
    summary: Summary
    share: float
    """Share of the task type's items that this model answered."""


def model_selection(
    task_types: Sequence[str], models: Sequence[str], correct: Sequence[bool], costs: Sequence[Decimal | None]
) -> list[SelectionRow]:
    """Which models handled which task types, at what accuracy and cost (task types sorted, busiest model first)."""
    per_type: dict[str, int] = {}
    for t in task_types:
        per_type[t] = per_type.get(t, 0) + 1
    rows: list[SelectionRow] = []
    for task_type in sorted(per_type):
        picked = [i for i, t in enumerate(task_types) if t == task_type]
        labels = [models[i] for i in picked]
        for model, summary in split_by(labels, [correct[i] for i in picked], [costs[i] for i in picked]):
            rows.append(SelectionRow(task_type, model, summary, summary.items / per_type[task_type]))
    rows.sort(key=lambda r: (r.task_type, -r.summary.items, r.model))
    return rows
