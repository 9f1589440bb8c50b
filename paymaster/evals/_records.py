"""Recorded outcomes as matrices: prompts x models, correctness and exact cost.

Sweeps use float copies of the costs (fast, and only compared); everything
reported is summed from the exact Decimal costs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..providers._replay import RecordedPrompt
from ..router._deps import require_numpy

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


@dataclass(frozen=True)
class RecordSet:
    """Every prompt's recorded outcome on every model (columns in ``models`` order)."""

    prompts: tuple[RecordedPrompt, ...]
    models: tuple[str, ...]
    correct: npt.NDArray[np.float64]
    cost: npt.NDArray[np.float64]
    missing: int

    @classmethod
    def build(cls, prompts: Iterable[RecordedPrompt], models: Sequence[str] | None = None) -> RecordSet:
        """Matrices over ``models`` in the order given (default: every complete model, cheapest first).

        A missing verdict counts as wrong.
        """
        np = require_numpy()
        rows = tuple(prompts)
        if not rows:
            raise ConfigurationError("a record set needs at least one recorded prompt")
        common = set(rows[0].outcomes).intersection(*(r.outcomes for r in rows))
        chosen = list(models) if models is not None else sorted(common)
        absent = [m for m in chosen if m not in common]
        if absent:
            raise ConfigurationError(f"model(s) {absent} lack recordings for some prompts; complete ones: "
                                     f"{sorted(common)}")
        if not chosen:
            raise ConfigurationError("no model has a recording for every prompt")
        correct = np.array([[1.0 if r.outcomes[m].correct else 0.0 for m in chosen] for r in rows])
        cost = np.array([[float(r.outcomes[m].cost_usd) for m in chosen] for r in rows])
        missing = sum(1 for r in rows for m in chosen if r.outcomes[m].correct is None)
        order = list(range(len(chosen)))
        if models is None:
            order.sort(key=lambda j: (cost[:, j].mean(), chosen[j]))
        return cls(
            prompts=rows, models=tuple(chosen[j] for j in order),
            correct=correct[:, order], cost=cost[:, order], missing=missing,
        )

    def __len__(self) -> int:
        return len(self.prompts)

    def column(self, model: str) -> int:
        """The column of ``model``; an unknown model lists the known ones."""
        try:
            return self.models.index(model)
        except ValueError:
            raise ConfigurationError(f"no model {model!r} in the records; known: {list(self.models)}") from None

    def cost_usd(self, row: int, model: str) -> Decimal:
        """The exact recorded cost of ``model`` on prompt ``row``."""
        return self.prompts[row].outcomes[model].cost_usd

    def response(self, row: int, model: str) -> str:
        """What ``model`` answered to prompt ``row``."""
        return self.prompts[row].outcomes[model].response

    @property
    def task_types(self) -> tuple[str, ...]:
        """Each prompt's task type ('-' when unknown)."""
        return tuple(r.task_type or "-" for r in self.prompts)

    @property
    def texts(self) -> list[str]:
        """Each prompt's text."""
        return [r.prompt for r in self.prompts]

    def subset(self, rows: Sequence[int] | Any) -> RecordSet:
        """The records of ``rows`` only (same models, same order)."""
        picked = [int(i) for i in rows]
        return RecordSet(
            prompts=tuple(self.prompts[i] for i in picked), models=self.models,
            correct=self.correct[picked], cost=self.cost[picked],
            missing=sum(1 for i in picked for m in self.models if self.prompts[i].outcomes[m].correct is None),
        )

    def restrict(self, models: Sequence[str]) -> RecordSet:
        """The same prompts over ``models`` only, in that order."""
        return RecordSet.build(self.prompts, models)
