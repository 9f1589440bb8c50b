"""Analytics over the ledger: cost per outcome, distributions, top spenders, showback, anomalies.

Only finished tasks count (a running task's cost is not final). A task with a
call of unknown price (``unpriced_calls > 0``) is counted and flagged, but kept
out of the money figures: its cost is unknown, not zero, and adding its known
part would mix a lower bound into exact sums. Money is ``Decimal`` dollars,
exact from the integer pico-dollar columns. Days are UTC days.

Every figure is a SQL aggregate except the percentiles, which come from one
narrow column (agent, cost) read in cost order, so a report over a million
steps reads each task row a few times and returns a few hundred rows.

This module holds the totals (``summary``) and spend per tenant, agent or tag;
the scope of a query is in ``_scope``, percentiles and medians in
``_distributions``, anomalies in ``_anomalies``. All are importable from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import TYPE_CHECKING, Any, Literal

from .._money import from_picos
from ._anomalies import DAY_MIN_HISTORY as DAY_MIN_HISTORY
from ._anomalies import DAY_SIGMAS as DAY_SIGMAS
from ._anomalies import DAY_WINDOW as DAY_WINDOW
from ._anomalies import TASK_FACTOR as TASK_FACTOR
from ._anomalies import TASK_MIN_PEERS as TASK_MIN_PEERS
from ._anomalies import Anomalies as Anomalies
from ._anomalies import DayAnomaly as DayAnomaly
from ._anomalies import TaskAnomaly as TaskAnomaly
from ._anomalies import anomalies as anomalies
from ._anomalies import utc_day as utc_day
from ._distributions import AgentCosts as AgentCosts
from ._distributions import Distribution as Distribution
from ._distributions import agent_costs as agent_costs
from ._distributions import cost_distribution as cost_distribution
from ._distributions import median as median
from ._distributions import median_picos as median_picos
from ._distributions import percentile as percentile
from ._reader import Reader, as_reader
from ._scope import _PICO, _PRICED
from ._scope import Scope as Scope
from ._scope import where as where

if TYPE_CHECKING:
    from ._scope import Source


@dataclass(frozen=True)
class Summary:
    """Totals over the finished tasks in a scope; money figures leave out unpriced tasks."""

    tasks: int
    succeeded: int
    unpriced: int
    cost: Decimal
    baseline: Decimal
    priced_succeeded: int
    cache_hits: int
    cache_saved: Decimal

    @property
    def success_rate(self) -> float | None:
        """Share of tasks that succeeded, or None with no tasks."""
        return self.succeeded / self.tasks if self.tasks else None

    @property
    def savings(self) -> Decimal:
        """What the all-frontier baseline would have cost, minus what was spent."""
        return self.baseline - self.cost

    @property
    def cost_per_success(self) -> Decimal | None:
        """Everything spent (failures too) per successful outcome, rounded up to the pico-dollar."""
        if not self.priced_succeeded:
            return None
        return (self.cost / self.priced_succeeded).quantize(_PICO, rounding=ROUND_CEILING).normalize()


@dataclass(frozen=True)
class Spend:
    """What one tenant, agent or tag value spent (priced tasks only) over how many tasks."""

    key: str | None  # None: tasks without the tag
    tasks: int
    unpriced: int
    cost: Decimal
    priced_succeeded: int = 0  # successful tasks with a known cost, for cost per outcome

    @property
    def cost_per_success(self) -> Decimal | None:
        """Everything spent per successful outcome, rounded up to the pico-dollar (None without successes)."""
        if not self.priced_succeeded:
            return None
        return (self.cost / self.priced_succeeded).quantize(_PICO, rounding=ROUND_CEILING).normalize()


def _priced_sum(column: str) -> str:
    return f"COALESCE(SUM(CASE WHEN {_PRICED} THEN {column} ELSE 0 END), 0)"


def summary(source: Source, scope: Scope | None = None) -> Summary:
    """Tasks, successes, cost, baseline, savings, cost per success and cache savings in a scope."""
    reader = as_reader(source)
    cond, params = where(reader, scope or Scope())
    ((n, ok, unpriced, cost, baseline, priced_ok, hits, saved),) = reader.rows(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN tasks.success THEN 1 ELSE 0 END), 0), "
        "COALESCE(SUM(CASE WHEN tasks.unpriced_calls > 0 THEN 1 ELSE 0 END), 0), "
        f"{_priced_sum('tasks.cost_picos')}, {_priced_sum('tasks.baseline_picos')}, "
        f"COALESCE(SUM(CASE WHEN tasks.success AND {_PRICED} THEN 1 ELSE 0 END), 0), "
        "COALESCE(SUM(tasks.cache_hits), 0), COALESCE(SUM(tasks.saved_picos), 0) "
        f"FROM tasks WHERE {cond}",
        params,
    )
    return Summary(
        tasks=int(n), succeeded=int(ok), unpriced=int(unpriced), cost=from_picos(int(cost)),
        baseline=from_picos(int(baseline)), priced_succeeded=int(priced_ok), cache_hits=int(hits),
        cache_saved=from_picos(int(saved)),
    )


def _group_column(reader: Reader, by: str, params: dict[str, Any]) -> str:
    """The SQL expression to group spend by: a column, or one tag's value."""
    if by in ("tenant", "agent"):
        return f"tasks.{by}"
    kind, _, key = by.partition(":")
    if kind == "tag" and key:
        params["groupkey"] = key
        return reader.tag_value("groupkey")
    raise ValueError(f"group by 'tenant', 'agent' or 'tag:KEY', not {by!r}")


def _spend(source: Source, by: str, scope: Scope) -> list[Spend]:
    reader = as_reader(source)
    cond, params = where(reader, scope)
    group = _group_column(reader, by, params)
    rows = reader.rows(
        f"SELECT {group}, COUNT(*), COALESCE(SUM(CASE WHEN tasks.unpriced_calls > 0 THEN 1 ELSE 0 END), 0), "
        f"{_priced_sum('tasks.cost_picos')}, "
        f"COALESCE(SUM(CASE WHEN tasks.success AND {_PRICED} THEN 1 ELSE 0 END), 0) "
        f"FROM tasks WHERE {cond} GROUP BY {group}",
        params,
    )
    return _ranked([Spend(key, int(n), int(unpriced), from_picos(int(picos)), int(ok))
                    for key, n, unpriced, picos, ok in rows])


def _ranked(spends: list[Spend]) -> list[Spend]:
    # Biggest spender first; ties in name order (untagged last) so the output is stable.
    return sorted(spends, key=lambda s: (-s.cost, s.key is None, s.key or ""))


def top_spenders(
    source: Source, by: Literal["tenant", "agent"] | str = "tenant", limit: int = 10, scope: Scope | None = None
) -> list[Spend]:
    """The ``limit`` biggest spenders by tenant, agent or ``tag:KEY`` (tasks without the tag left out)."""
    return [s for s in _spend(source, by, scope or Scope()) if s.key is not None][:limit]


def showback(source: Source, tag_key: str, scope: Scope | None = None) -> list[Spend]:
    """Cost per value of one tag, with untagged tasks as key None so the rows add up to the total."""
    return _spend(source, f"tag:{tag_key}", scope or Scope())


def tag_keys(source: Source, scope: Scope | None = None) -> list[str]:
    """Every tag key used by a finished task in the scope, sorted."""
    reader = as_reader(source)
    cond, params = where(reader, scope or Scope())
    join, key_col, _ = reader.tag_pairs()
    return sorted(str(k) for (k,) in reader.rows(f"SELECT DISTINCT {key_col} FROM tasks{join} WHERE {cond}", params))
