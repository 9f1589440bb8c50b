"""Cost distributions per agent: percentiles and medians of priced task costs.

They come from one narrow column (agent, cost) read in cost order, so a report
over a million steps reads each task row a few times. Percentiles are
nearest-rank; a distribution with no priced task is None, never zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import groupby
from operator import itemgetter
from typing import TYPE_CHECKING

from .._money import from_picos
from ._reader import as_reader
from ._scope import _PRICED, Scope, where

if TYPE_CHECKING:
    from ._scope import Source


@dataclass(frozen=True)
class Distribution:
    """Nearest-rank percentiles of one agent's priced task costs (None when none of its tasks was priced)."""

    agent: str
    tasks: int
    unpriced: int
    p50: Decimal | None
    p90: Decimal | None
    p99: Decimal | None
    max: Decimal | None


def percentile(ordered: Sequence[Decimal], p: int) -> Decimal:
    """The nearest-rank ``p``-th percentile of ascending values: the smallest value with p% at or below it."""
    if not ordered:
        raise ValueError("percentile of no values")
    return ordered[_rank(len(ordered), p) - 1]


def _rank(n: int, p: int) -> int:
    return max(1, -(-p * n // 100))  # ceil(p/100 * n) in integers, so no float rounding


@dataclass(frozen=True)
class AgentCosts:
    """Each agent's priced task costs in ascending pico-dollars, and how many of its tasks were unpriced."""

    priced: dict[str, list[int]]
    unpriced: dict[str, int]

    def agents(self) -> list[str]:
        """Every agent with a finished task in the scope, in name order."""
        return sorted(self.priced.keys() | self.unpriced.keys())

    def median_picos(self, agent: str) -> Decimal | None:
        """The median priced cost of an agent in pico-dollars (None without priced tasks)."""
        costs = self.priced.get(agent)
        return median_picos(costs) if costs else None


def median_picos(ordered: Sequence[int]) -> Decimal:
    """The median of ascending pico-dollar amounts: the middle one or the mean of the middle two (may end in .5)."""
    half = len(ordered) // 2
    return Decimal(ordered[half]) if len(ordered) % 2 else Decimal(ordered[half - 1] + ordered[half]) / 2


def agent_costs(source: Source, scope: Scope | None = None) -> AgentCosts:
    """One narrow read of priced (agent, cost) in cost order, the input of percentiles and medians."""
    reader = as_reader(source)
    cond, params = where(reader, scope or Scope())
    rows = reader.rows(
        f"SELECT tasks.agent, tasks.cost_picos FROM tasks WHERE {cond} AND {_PRICED} "
        "ORDER BY tasks.agent, tasks.cost_picos",
        params,
    )
    priced = {agent: [int(r[1]) for r in group] for agent, group in groupby(rows, itemgetter(0))}
    unpriced = reader.rows(
        f"SELECT tasks.agent, COUNT(*) FROM tasks WHERE {cond} AND tasks.unpriced_calls > 0 GROUP BY tasks.agent",
        params,
    )
    return AgentCosts(priced, {agent: int(n) for agent, n in unpriced})


def cost_distribution(
    source: Source, scope: Scope | None = None, costs: AgentCosts | None = None
) -> list[Distribution]:
    """Per agent, the p50/p90/p99 and max of priced task costs, agents in name order."""
    costs = costs or agent_costs(source, scope)
    out = []
    for agent in costs.agents():
        ordered = costs.priced.get(agent, [])
        n_unpriced = costs.unpriced.get(agent, 0)
        p50, p90, p99, top = (
            tuple(from_picos(ordered[_rank(len(ordered), p) - 1]) for p in (50, 90, 99, 100))
            if ordered else (None, None, None, None)  # unknown, never zero
        )
        out.append(Distribution(agent, len(ordered) + n_unpriced, n_unpriced, p50, p90, p99, top))
    return out


def median(values: Iterable[Decimal]) -> Decimal:
    """The median: the middle value, or the mean of the middle two (exact in Decimal)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("median of no values")
    half = len(ordered) // 2
    return ordered[half] if len(ordered) % 2 else ((ordered[half - 1] + ordered[half]) / 2).normalize()
