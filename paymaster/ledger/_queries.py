"""Analytics over the ledger: cost per outcome, distributions, top spenders, showback, anomalies.

Only finished tasks count (a running task's cost is not final). A task with a
call of unknown price (``unpriced_calls > 0``) is counted and flagged, but kept
out of the money figures: its cost is unknown, not zero, and adding its known
part would mix a lower bound into exact sums. Money is ``Decimal`` dollars,
exact from the integer pico-dollar columns. Days are UTC days.

Every figure is a SQL aggregate except the percentiles, which come from one
narrow column (agent, cost) read in cost order, so a report over a million
steps reads each task row a few times and returns a few hundred rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, Decimal
from itertools import groupby
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal

from .._money import PICOS_PER_USD, from_picos
from ._reader import OPEN_STATUSES, Reader, as_reader, in_params

if TYPE_CHECKING:
    from ._ledger import Ledger

    Source = Ledger | Reader

_DAY = 86_400
_PICO = Decimal(1) / PICOS_PER_USD
_PRICED = "tasks.unpriced_calls = 0"  # tasks whose every call had a price

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
    priced_succeeded: int = 0  # successful tasks with a known cost, for cost per outcome

    @property
    def cost_per_success(self) -> Decimal | None:
        """Everything spent per successful outcome, rounded up to the pico-dollar (None without successes)."""
        if not self.priced_succeeded:
            return None
        return (self.cost / self.priced_succeeded).quantize(_PICO, rounding=ROUND_CEILING).normalize()


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


def where(
    reader: Reader, scope: Scope, *, finished: bool = True, shadows: bool = False
) -> tuple[str, dict[str, Any]]:
    """The SQL conditions of a scope over ``tasks`` (finished tasks only, unless told), and their parameters.

    Shadow evaluation runs (agent ``NAME#shadow``) are left out unless ``shadows``: they are not live work.
    """
    conds: list[str] = []
    params: dict[str, Any] = {}
    if not shadows and scope.agent is None:
        conds.append("tasks.agent NOT LIKE :notshadow")
        params["notshadow"] = "%#shadow"
    if finished:
        names, values = in_params("open", OPEN_STATUSES)
        conds.append(f"tasks.status NOT IN {names}")
        params.update(values)
    for name, op, value in (("since", ">=", scope.since), ("until", "<", scope.until)):
        if value is not None:
            conds.append(f"tasks.created_at {op} :{name}")
            params[name] = value
    for name in ("tenant", "agent"):
        equals = getattr(scope, name)
        if equals is not None:
            conds.append(f"tasks.{name} = :{name}")
            params[name] = equals
    for i, (key, tag) in enumerate(sorted(scope.tags.items())):
        conds.append(f"{reader.tag_value(f'tagk{i}')} = :tagv{i}")
        params[f"tagk{i}"], params[f"tagv{i}"] = key, tag
    return " AND ".join(conds) or "1 = 1", params


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
