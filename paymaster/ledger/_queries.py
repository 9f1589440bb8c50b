"""Analytics over the ledger: cost per outcome, distributions, top spenders, showback, anomalies.

Only finished tasks count (a running task's cost is not final). A task with a
call of unknown price (``unpriced_calls > 0``) is counted and flagged, but kept
out of the money figures: its cost is unknown, not zero, and adding its known
part would mix a lower bound into exact sums. Money is ``Decimal`` dollars,
exact from the integer pico-dollar columns. Days are UTC days.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, Decimal
from typing import Any, Literal

from sqlalchemy import ColumnElement, Table, case, func, select

from .._money import PICOS_PER_USD, from_picos
from ._ledger import Ledger
from ._tables import TASK_STATUSES_OPEN, TaskRecord

_T: Table = TaskRecord.__table__  # type: ignore[attr-defined]
_DAY = 86_400
_PICO = Decimal(1) / PICOS_PER_USD
_PRICED = _T.c.unpriced_calls == 0  # tasks whose every call had a price

TASK_FACTOR = 3  # a task over 3x its agent's median cost is an anomaly
TASK_MIN_PEERS = 5  # a median of fewer tasks says too little to judge by
DAY_WINDOW = 30  # a day is judged against the 30 days before it
DAY_MIN_HISTORY = 7  # and only once at least a week of history exists
DAY_SIGMAS = 2


@dataclass(frozen=True)
class Scope:
    """Which tasks a query covers: created in [since, until) (epoch seconds), of a tenant, agent and tags."""

    since: float | None = None
    until: float | None = None
    tenant: str | None = None
    agent: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


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
class Distribution:
    """Nearest-rank percentiles of one agent's priced task costs (None when none of its tasks was priced)."""

    agent: str
    tasks: int
    unpriced: int
    p50: Decimal | None
    p90: Decimal | None
    p99: Decimal | None
    max: Decimal | None


@dataclass(frozen=True)
class Spend:
    """What one tenant, agent or tag value spent (priced tasks only) over how many tasks."""

    key: str | None  # None: tasks without the tag
    tasks: int
    unpriced: int
    cost: Decimal


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
    """Anomalous tasks and days in a scope."""

    tasks: list[TaskAnomaly]
    days: list[DayAnomaly]


def _where(scope: Scope) -> list[ColumnElement[bool]]:
    """The SQL conditions of a scope, always limited to finished tasks."""
    conds: list[ColumnElement[bool]] = [_T.c.status.notin_(TASK_STATUSES_OPEN)]
    if scope.since is not None:
        conds.append(_T.c.created_at >= scope.since)
    if scope.until is not None:
        conds.append(_T.c.created_at < scope.until)
    if scope.tenant is not None:
        conds.append(_T.c.tenant == scope.tenant)
    if scope.agent is not None:
        conds.append(_T.c.agent == scope.agent)
    conds.extend(_T.c.tags[k].as_string() == v for k, v in scope.tags.items())
    return conds


def _fetch(
    ledger: Ledger, *columns: Any, scope: Scope, extra: ColumnElement[bool] | None = None, group_by: Any = None
) -> Sequence[Any]:
    """Run one select over the finished tasks of a scope, in a short read of its own."""
    query = select(*columns).where(*_where(scope))
    if extra is not None:
        query = query.where(extra)
    if group_by is not None:
        query = query.group_by(group_by)
    with ledger.engine.connect() as conn:
        return conn.execute(query).all()



def _priced_sum(column: Any) -> Any:
    """The SQL sum of a money column over priced tasks only."""
    return func.coalesce(func.sum(case((_PRICED, column), else_=0)), 0)


def summary(ledger: Ledger, scope: Scope | None = None) -> Summary:
    """Tasks, successes, cost, baseline, savings, cost per success and cache savings in a scope."""
    scope = scope or Scope()
    (row,) = _fetch(
        ledger,
        func.count(),
        func.count().filter(_T.c.success.is_(True)),
        func.count().filter(~_PRICED),
        _priced_sum(_T.c.cost_picos),
        _priced_sum(_T.c.baseline_picos),
        func.count().filter(_T.c.success.is_(True) & _PRICED),
        func.coalesce(func.sum(_T.c.cache_hits), 0),
        func.coalesce(func.sum(_T.c.saved_picos), 0),
        scope=scope,
    )
    return Summary(
        tasks=int(row[0]), succeeded=int(row[1]), unpriced=int(row[2]), cost=from_picos(int(row[3])),
        baseline=from_picos(int(row[4])), priced_succeeded=int(row[5]), cache_hits=int(row[6]),
        cache_saved=from_picos(int(row[7])),
    )


def percentile(ordered: Sequence[Decimal], p: int) -> Decimal:
    """The nearest-rank ``p``-th percentile of ascending values: the smallest value with p% at or below it."""
    if not ordered:
        raise ValueError("percentile of no values")
    rank = max(1, -(-p * len(ordered) // 100))  # ceil(p/100 * n) in integers, so no float rounding
    return ordered[rank - 1]


def cost_distribution(ledger: Ledger, scope: Scope | None = None) -> list[Distribution]:
    """Per agent, the p50/p90/p99 and max of priced task costs, agents in name order."""
    rows = _fetch(ledger, _T.c.agent, _T.c.cost_picos, _T.c.unpriced_calls, scope=scope or Scope())
    costs: dict[str, list[int]] = defaultdict(list)
    unpriced: dict[str, int] = defaultdict(int)
    for agent, picos, n_unpriced in rows:
        if n_unpriced:
            unpriced[agent] += 1
        else:
            costs[agent].append(int(picos))
    out = []
    for agent in sorted(costs.keys() | unpriced.keys()):
        ordered = [from_picos(c) for c in sorted(costs[agent])]
        p50, p90, p99, top = (
            (percentile(ordered, 50), percentile(ordered, 90), percentile(ordered, 99), ordered[-1])
            if ordered else (None, None, None, None)  # unknown, never zero
        )
        out.append(Distribution(agent, len(ordered) + unpriced[agent], unpriced[agent], p50, p90, p99, top))
    return out


def _group_column(by: str) -> Any:
    """The SQL expression to group spend by: a column, or one tag's value."""
    if by in ("tenant", "agent"):
        return _T.c[by]
    kind, _, key = by.partition(":")
    if kind == "tag" and key:
        return _T.c.tags[key].as_string()
    raise ValueError(f"group by 'tenant', 'agent' or 'tag:KEY', not {by!r}")


def _spend(ledger: Ledger, by: str, scope: Scope) -> list[Spend]:
    group = _group_column(by).label("key")
    rows = _fetch(
        ledger, group, func.count(), func.count().filter(~_PRICED), _priced_sum(_T.c.cost_picos),
        scope=scope, group_by=group,
    )
    spends = [Spend(key, int(n), int(unpriced), from_picos(int(picos))) for key, n, unpriced, picos in rows]
    # Biggest spender first; ties in name order (untagged last) so the output is stable.
    return sorted(spends, key=lambda s: (-s.cost, s.key is None, s.key or ""))


def top_spenders(
    ledger: Ledger, by: Literal["tenant", "agent"] | str = "tenant", limit: int = 10, scope: Scope | None = None
) -> list[Spend]:
    """The ``limit`` biggest spenders by tenant, agent or ``tag:KEY`` (tasks without the tag left out)."""
    return [s for s in _spend(ledger, by, scope or Scope()) if s.key is not None][:limit]


def showback(ledger: Ledger, tag_key: str, scope: Scope | None = None) -> list[Spend]:
    """Cost per value of one tag, with untagged tasks as key None so the rows add up to the total."""
    return _spend(ledger, f"tag:{tag_key}", scope or Scope())


def tag_keys(ledger: Ledger, scope: Scope | None = None) -> list[str]:
    """Every tag key used by a finished task in the scope, sorted."""
    # JSON key listing is dialect-specific SQL (json_each, json_object_keys); reading the tags is portable.
    rows = _fetch(ledger, _T.c.tags, scope=scope or Scope())
    return sorted({k for (tags,) in rows for k in (tags or {})})


def utc_day(ts: float) -> dt.date:
    """The UTC calendar day of an epoch timestamp."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).date()


def anomalies(ledger: Ledger, scope: Scope | None = None) -> Anomalies:
    """Tasks over 3x their agent's median (5+ tasks) and days over mean + 2 sigma of the previous 30 (7+ days)."""
    scope = scope or Scope()
    # A day is judged against the 30 before it, which may lie before ``since``.
    history = replace(scope, since=None if scope.since is None else scope.since - DAY_WINDOW * _DAY)
    rows = _fetch(
        ledger, _T.c.id, _T.c.agent, _T.c.tenant, _T.c.created_at, _T.c.cost_picos, scope=history, extra=_PRICED
    )
    in_scope = [r for r in rows if scope.since is None or r.created_at >= scope.since]
    first = None if scope.since is None else utc_day(scope.since)
    return Anomalies(_task_anomalies(in_scope), _day_anomalies(rows, first))


def _task_anomalies(rows: Sequence[Any]) -> list[TaskAnomaly]:
    by_agent: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        by_agent[r.agent].append(r)
    found = []
    for agent, tasks in by_agent.items():
        if len(tasks) < TASK_MIN_PEERS:
            continue
        mid = median(from_picos(int(r.cost_picos)) for r in tasks)
        if not mid:
            continue  # a free median (all cache hits) would flag every paid task of the agent
        found += [
            TaskAnomaly(r.id, agent, r.tenant, r.created_at, from_picos(int(r.cost_picos)), mid)
            for r in tasks
            if from_picos(int(r.cost_picos)) > TASK_FACTOR * mid
        ]
    return sorted(found, key=lambda a: (-a.cost, a.task_id))


def _day_anomalies(rows: Sequence[Any], first_reported: dt.date | None) -> list[DayAnomaly]:
    totals: dict[dt.date, int] = defaultdict(int)
    for r in rows:
        totals[utc_day(r.created_at)] += int(r.cost_picos)
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


def median(values: Iterable[Decimal]) -> Decimal:
    """The median: the middle value, or the mean of the middle two (exact in Decimal)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("median of no values")
    half = len(ordered) // 2
    return ordered[half] if len(ordered) % 2 else ((ordered[half - 1] + ordered[half]) / 2).normalize()


def _to_pico(usd: Decimal) -> Decimal:
    """Round a derived statistic to the pico-dollar, the ledger's own precision."""
    return usd.quantize(_PICO).normalize()
