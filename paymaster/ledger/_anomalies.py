"""Anomalies in a scope: tasks far above their agent's median cost, and days far above the days before.

A task is anomalous over ``TASK_FACTOR`` times its agent's median (with at
least ``TASK_MIN_PEERS`` priced tasks); a UTC day, over the mean plus
``DAY_SIGMAS`` standard deviations of the ``DAY_WINDOW`` days before it (with
at least ``DAY_MIN_HISTORY`` of them). Priced tasks only; Decimal dollars.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING

from .._money import from_picos
from ._distributions import AgentCosts, agent_costs
from ._reader import Reader, as_reader
from ._scope import _PICO, _PRICED, Scope, where

if TYPE_CHECKING:
    from ._scope import Source

_DAY = 86_400

TASK_FACTOR = 3  # a task over 3x its agent's median cost is an anomaly
TASK_MIN_PEERS = 5  # a median of fewer tasks says too little to judge by
DAY_WINDOW = 30  # a day is judged against the 30 days before it
DAY_MIN_HISTORY = 7  # and only once at least a week of history exists
DAY_SIGMAS = 2


@dataclass(frozen=True)
class TaskAnomaly:
    """A task that cost more than ``TASK_FACTOR`` times its agent's median."""

    task_id: str
    agent: str
    tenant: str
    created_at: float
    cost: Decimal
    median: Decimal


@dataclass(frozen=True)
class DayAnomaly:
    """A UTC day whose spend exceeded the mean plus two standard deviations of the 30 days before it."""

    day: dt.date
    cost: Decimal
    mean: Decimal
    threshold: Decimal


@dataclass(frozen=True)
class Anomalies:
    """Anomalous tasks (the costliest ``limit`` of ``task_count``) and days in a scope."""

    tasks: list[TaskAnomaly]
    days: list[DayAnomaly]
    task_count: int = 0


def utc_day(ts: float) -> dt.date:
    """The UTC calendar day of an epoch timestamp."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).date()


_EPOCH = dt.date(1970, 1, 1)


def anomalies(
    source: Source, scope: Scope | None = None, *, limit: int | None = None, costs: AgentCosts | None = None
) -> Anomalies:
    """Tasks over 3x their agent's median (5+ tasks; the costliest ``limit``, all when None) and days over
    mean + 2 sigma of the previous 30 (7+ days)."""
    reader = as_reader(source)
    scope = scope or Scope()
    costs = costs or agent_costs(reader, scope)
    tasks, count = _task_anomalies(reader, scope, costs, limit)
    # A day is judged against the 30 before it, which may lie before ``since``.
    history = replace(scope, since=None if scope.since is None else scope.since - DAY_WINDOW * _DAY)
    cond, params = where(reader, history)
    day = reader.utc_day("tasks.created_at")
    totals = {
        _EPOCH + dt.timedelta(days=int(n)): int(picos)
        for n, picos in reader.rows(
            f"SELECT {day}, SUM(tasks.cost_picos) FROM tasks WHERE {cond} AND {_PRICED} GROUP BY {day}", params
        )
    }
    first = None if scope.since is None else utc_day(scope.since)
    return Anomalies(tasks, _day_anomalies(totals, first), count)


def _task_anomalies(
    reader: Reader, scope: Scope, costs: AgentCosts, limit: int | None
) -> tuple[list[TaskAnomaly], int]:
    """The costliest anomalous tasks (``limit`` of them, or all) and how many there are in all."""
    cond, params = where(reader, scope)
    medians: dict[str, Decimal] = {}
    over: list[str] = []
    for i, agent in enumerate(sorted(costs.priced)):
        mid = costs.median_picos(agent)
        if len(costs.priced[agent]) < TASK_MIN_PEERS or not mid:
            continue  # a free median (all cache hits) would flag every paid task of the agent
        medians[agent] = mid
        # cost > 3 x median, in integers: cost > floor(3 x median) (the median may end in .5)
        over.append(f"(tasks.agent = :ma{i} AND tasks.cost_picos > :ml{i})")
        params[f"ma{i}"], params[f"ml{i}"] = agent, int(TASK_FACTOR * mid)
    if not over:
        return [], 0
    rows = reader.rows(
        "SELECT tasks.id, tasks.agent, tasks.tenant, tasks.created_at, tasks.cost_picos, COUNT(*) OVER () "
        f"FROM tasks WHERE {cond} AND {_PRICED} AND ({' OR '.join(over)}) "
        "ORDER BY tasks.cost_picos DESC, tasks.id" + ("" if limit is None else f" LIMIT {int(limit)}"),
        params,
    )
    found = [
        TaskAnomaly(task_id, agent, tenant, created_at, from_picos(int(picos)), (medians[agent] * _PICO).normalize())
        for task_id, agent, tenant, created_at, picos, _ in rows
    ]
    return found, int(rows[0][5]) if rows else 0


def _day_anomalies(totals: Mapping[dt.date, int], first_reported: dt.date | None) -> list[DayAnomaly]:
    if not totals:
        return []
    start = min(totals)  # days before the first task are not history, but quiet days after it are (spend 0)
    found = []
    for day in sorted(totals):
        if first_reported is not None and day < first_reported:
            continue
        back = [day - dt.timedelta(days=i) for i in range(1, DAY_WINDOW + 1)]
        prev = [from_picos(totals.get(d, 0)) for d in back if d >= start]
        if len(prev) < DAY_MIN_HISTORY:
            continue
        mean = sum(prev, Decimal(0)) / len(prev)
        sigma = (sum(((x - mean) ** 2 for x in prev), Decimal(0)) / len(prev)).sqrt()
        threshold = mean + DAY_SIGMAS * sigma
        cost = from_picos(totals[day])
        if cost > threshold:
            found.append(DayAnomaly(day, cost, _to_pico(mean), _to_pico(threshold)))
    return found


def _to_pico(usd: Decimal) -> Decimal:
    """Round a derived statistic to the pico-dollar, the ledger's own precision."""
    return usd.quantize(_PICO).normalize()
