"""Routing policies replayed on recorded outcomes: single models, the oracle, routers and cascades.

Each policy yields, per prompt, what answered it, whether that was right and
the exact recorded cost of every call it took (a cascade's check included).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from ..router._cascade import Cascade, answer_key
from ._metrics import SelectionRow, Summary, model_selection, split_by, summarise
from ._records import RecordSet


@dataclass(frozen=True)
class PolicyResult:
    """A policy's per-prompt routes, verdicts and exact costs on a record set."""

    name: str
    routes: tuple[str, ...]
    correct: tuple[bool, ...]
    costs: tuple[Decimal, ...]
    task_types: tuple[str, ...]
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def summary(self) -> Summary:
        """Accuracy and total cost."""
        return summarise(self.correct, self.costs)

    def split(self) -> list[tuple[str, Summary]]:
        """Results per route (which model, or which cascade path, answered)."""
        return split_by(self.routes, self.correct, self.costs)

    def selection(self) -> list[SelectionRow]:
        """Model selection analytics: routes per task type with their accuracy and cost."""
        return model_selection(self.task_types, self.routes, self.correct, self.costs)


def _result(
    records: RecordSet, name: str, routes: list[str], correct: list[bool], costs: list[Decimal],
    params: Mapping[str, str] | None = None,
) -> PolicyResult:
    return PolicyResult(
        name=name, routes=tuple(routes), correct=tuple(correct), costs=tuple(costs),
        task_types=records.task_types, params=dict(params or {}),
    )


def single(records: RecordSet, model: str) -> PolicyResult:
    """Every prompt to ``model``."""
    j = records.column(model)
    return _result(
        records, model, [model] * len(records), [bool(records.correct[i, j]) for i in range(len(records))],
        [records.cost_usd(i, model) for i in range(len(records))],
    )


def oracle(records: RecordSet) -> PolicyResult:
    """Each prompt to the cheapest model that got it right (the cheapest model when none did)."""
    routes, correct, costs = [], [], []
    for i, prompt in enumerate(records.prompts):
        right = [m for j, m in enumerate(records.models) if records.correct[i, j]]
        model = min(right or list(records.models), key=lambda m: (prompt.outcomes[m].cost_usd, m))
        routes.append(model)
        correct.append(bool(right))
        costs.append(prompt.outcomes[model].cost_usd)
    return _result(records, "oracle", routes, correct, costs)


def routed(
    records: RecordSet, name: str, choice: Sequence[str], params: Mapping[str, str] | None = None
) -> PolicyResult:
    """Prompt i to model ``choice[i]``."""
    if len(choice) != len(records):
        raise ValueError(f"{len(choice)} choices for {len(records)} prompts")
    return _result(
        records, name, list(choice),
        [bool(records.correct[i, records.column(m)]) for i, m in enumerate(choice)],
        [records.cost_usd(i, m) for i, m in enumerate(choice)], params,
    )


def agreement(records: RecordSet, cascade: Cascade) -> list[bool]:
    """Whether the answer and check models gave the same answer key, per prompt."""
    return [
        answer_key(r.outcomes[cascade.answer].response) == answer_key(r.outcomes[cascade.check].response)
        for r in records.prompts
    ]


def cascaded(
    records: RecordSet, name: str, cascade: Cascade, use: Sequence[bool], otherwise: Sequence[str],
    params: Mapping[str, str] | None = None,
) -> PolicyResult:
    """The cascade on prompts where ``use`` is true, model ``otherwise[i]`` elsewhere. Check costs count."""
    agree = agreement(records, cascade)
    routes, correct, costs = [], [], []
    a, e = records.column(cascade.answer), records.column(cascade.escalate)
    for i in range(len(records)):
        if not use[i]:
            model = otherwise[i]
            routes.append(model)
            correct.append(bool(records.correct[i, records.column(model)]))
            costs.append(records.cost_usd(i, model))
            continue
        paid = records.cost_usd(i, cascade.answer) + records.cost_usd(i, cascade.check)
        if agree[i]:
            routes.append(f"{cascade.answer} (checked)")
            correct.append(bool(records.correct[i, a]))
            costs.append(paid)
        else:
            routes.append(f"{cascade.escalate} (escalated)")
            correct.append(bool(records.correct[i, e]))
            costs.append(paid + records.cost_usd(i, cascade.escalate))
    return _result(records, name, routes, correct, costs, params)
