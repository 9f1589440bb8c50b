"""The report as data: one pass of queries that every rendering (terminal, JSON, CSV, HTML) reads from."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .._money import from_picos, plain_usd
from ._economics import SURGE_FACTOR, AgentEconomics, Surge, model_changes, recorded_human_costs, unit_economics
from ._queries import (
    Anomalies,
    Distribution,
    Scope,
    Spend,
    Summary,
    agent_costs,
    anomalies,
    cost_distribution,
    median_picos,
    where,
)
from ._raises import CapRaise, cap_raises
from ._reader import Reader, as_reader
from ._shadows import ShadowDay, shadow_day_dict, shadow_days, shadow_records

if TYPE_CHECKING:
    from ._ledger import Ledger

_EPOCH = dt.date(1970, 1, 1)
HISTOGRAM_BINS = 24


@dataclass(frozen=True)
class Histogram:
    """An agent's priced task costs in log-spaced bins: ``edges`` has one more entry than ``counts``."""

    agent: str
    edges: list[Decimal]
    counts: list[int]
    median: Decimal
    tasks: int


@dataclass(frozen=True)
class TierSpend:
    """Model calls, tokens and cost on one tier (None: calls with no tier, such as tools)."""

    tier: str | None
    calls: int
    tokens: int
    cost: Decimal
    baseline: Decimal


@dataclass(frozen=True)
class QualityPoint:
    """One tier's eval record (``paymaster eval --record``): tasks, successes and cost per task."""

    tier: str
    tasks: int
    succeeded: int
    cost_per_task: Decimal

    @property
    def success_rate(self) -> float:
        """Share of the tier's eval tasks that succeeded."""
        return self.succeeded / self.tasks if self.tasks else 0.0


@dataclass(frozen=True)
class Charts:
    """What only the HTML report draws: spend per day and agent, cost histograms, the tier split, eval records."""

    days: list[dt.date]
    daily: dict[str, list[Decimal]]  # agent -> cost per day, aligned with ``days``
    histograms: list[Histogram]
    tiers: list[TierSpend]
    quality: list[QualityPoint] = field(default_factory=list)  # cheapest first; empty without eval records


@dataclass(frozen=True)
class Report:
    """Every figure of ``paymaster report`` for one scope."""

    url: str
    scope: Scope
    by: str
    summary: Summary
    distributions: list[Distribution]
    top: list[Spend]
    showback: dict[str, list[Spend]]
    anomalies: Anomalies
    agent_spend: list[Spend] = field(default_factory=list)  # every agent, with its successes
    charts: Charts | None = None
    economics: list[AgentEconomics] | None = None  # per agent, name order (None: not asked for)
    changes: list[Surge] | None = None  # every model or version change, ``surged`` marking jumps (None: not asked)
    shadow: list[ShadowDay] = field(default_factory=list)  # the router's quality measured by shadow runs, per day
    raises: list[CapRaise] = field(default_factory=list)  # temporary cap raises in force during the scope
    generated_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


@dataclass(frozen=True)
class Rollup:
    """Totals, spend by tenant, agent and tag, from one grouped scan of the tasks."""

    summary: Summary
    spend: dict[str, list[Spend]]  # "tenant", "agent", "tag:KEY" -> spenders, biggest first (untagged as None)


def rollup(reader: Reader, scope: Scope) -> Rollup:
    """One scan grouped by (tenant, agent, tags), rolled up in Python: the groups are few however many tasks.

    Tags are grouped as their JSON text; the same tags written in another key order are merged here.
    """
    cond, params = where(reader, scope)
    tags = reader.tags_text()
    priced = "tasks.unpriced_calls = 0"
    rows = reader.rows(
        f"SELECT tasks.tenant, tasks.agent, {tags}, COUNT(*), "
        "SUM(CASE WHEN tasks.success THEN 1 ELSE 0 END), SUM(CASE WHEN tasks.unpriced_calls > 0 THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN {priced} THEN tasks.cost_picos ELSE 0 END), "
        f"SUM(CASE WHEN {priced} THEN tasks.baseline_picos ELSE 0 END), "
        f"SUM(CASE WHEN tasks.success AND {priced} THEN 1 ELSE 0 END), SUM(tasks.cache_hits), SUM(tasks.saved_picos) "
        # Tags first: no index starts with them, so SQLite scans the table once instead of hopping along the
        # tenant index (twice as slow here).
        f"FROM tasks WHERE {cond} GROUP BY {tags}, tasks.agent, tasks.tenant",
        params,
    )
    totals = [0] * 8
    spend: dict[str, dict[str | None, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0, 0]))
    parsed: dict[str, dict[str, Any]] = {}
    for tenant, agent, tag_text, *figures in rows:
        values = [int(v or 0) for v in figures]
        totals = [a + b for a, b in zip(totals, values, strict=True)]
        n, _, unpriced, cost, _, priced_ok = values[:6]
        if tag_text not in parsed:
            parsed[tag_text] = json.loads(tag_text) if tag_text else {}
        keys = [("tenant", tenant), ("agent", agent)] + [(f"tag:{k}", str(v)) for k, v in parsed[tag_text].items()]
        for group, key in keys:
            acc = spend[group][key]
            acc[0], acc[1], acc[2], acc[3] = acc[0] + n, acc[1] + unpriced, acc[2] + cost, acc[3] + priced_ok
    n, ok, unpriced, cost, baseline, priced_ok, hits, saved = totals
    out: dict[str, list[Spend]] = {}
    for group, by_key in spend.items():
        spends = [Spend(k, a[0], a[1], from_picos(a[2]), a[3]) for k, a in by_key.items()]
        if group.startswith("tag:"):
            # A task has at most one value per key, so the untagged share is the total less the tagged ones.
            grand = (n, unpriced, cost, priced_ok)
            rest = [grand[i] - sum(a[i] for a in by_key.values()) for i in range(4)]
            if rest[0]:
                spends.append(Spend(None, rest[0], rest[1], from_picos(rest[2]), rest[3]))
        out[group] = sorted(spends, key=lambda s: (-s.cost, s.key is None, s.key or ""))
    return Rollup(
        Summary(tasks=n, succeeded=ok, unpriced=unpriced, cost=from_picos(cost), baseline=from_picos(baseline),
                priced_succeeded=priced_ok, cache_hits=hits, cache_saved=from_picos(saved)),
        out,
    )


def build_report(
    source: Ledger | Reader, scope: Scope | None = None, *, by: str = "tenant", limit: int = 10,
    anomaly_limit: int | None = 10, charts: bool = False, economics: bool = False,
    human_costs: Mapping[str, Decimal] | None = None, surges: bool = False, surge_factor: Decimal = SURGE_FACTOR,
) -> Report:
    """Run the report's queries once: totals, percentiles, top spenders, showback, top anomalies (and charts;
    unit economics against ``human_costs``, dollars per outcome by agent; changes of model or version).

    Unit economics show when asked for or when some agent's tasks recorded a human cost (``human_costs``
    win over those); surges are asked for: they read every step, a second or so per million steps.
    """
    reader = as_reader(source)
    scope = scope or Scope()
    if by not in ("tenant", "agent") and not by.startswith("tag:"):
        raise ValueError(f"group by 'tenant', 'agent' or 'tag:KEY', not {by!r}")
    with reader.snapshot():  # one state of the ledger, so the sections add up while tasks keep finishing
        report = _build(reader, scope, by, limit, anomaly_limit, charts)
        costs = {**recorded_human_costs(reader, scope), **(human_costs or {})}
        return replace(
            report,
            economics=unit_economics(reader, scope, costs) if economics or costs else None,
            changes=model_changes(reader, scope, factor=surge_factor) if surges else None,
            raises=cap_raises(reader, scope),
        )


def _build(reader: Reader, scope: Scope, by: str, limit: int, anomaly_limit: int | None, charts: bool) -> Report:
    rolled = rollup(reader, scope)
    costs = agent_costs(reader, scope)
    found = anomalies(reader, scope, limit=anomaly_limit, costs=costs)
    drawn = None
    if charts:
        days, daily = daily_by_agent(reader, scope)
        hists = [h for h in (histogram(a, costs.priced[a]) for a in sorted(costs.priced)) if h is not None]
        drawn = Charts(days, daily, hists, tier_split(reader, scope), eval_points(reader, scope))
    return Report(
        url=reader.url, scope=scope, by=by, summary=rolled.summary,
        distributions=cost_distribution(reader, costs=costs),
        top=[s for s in rolled.spend.get(by, []) if s.key is not None][:limit],
        showback={k[4:]: v for k, v in sorted(rolled.spend.items()) if k.startswith("tag:")},
        anomalies=found, agent_spend=rolled.spend.get("agent", []), charts=drawn,
        shadow=shadow_days(shadow_records(reader, scope)),
    )


def daily_by_agent(reader: Reader, scope: Scope) -> tuple[list[dt.date], dict[str, list[Decimal]]]:
    """Priced spend per UTC day and agent, every day from the first to the last (quiet days at zero)."""
    cond, params = where(reader, scope)
    day = reader.utc_day("tasks.created_at")
    rows = reader.rows(
        f"SELECT {day}, tasks.agent, SUM(tasks.cost_picos) FROM tasks WHERE {cond} AND tasks.unpriced_calls = 0 "
        f"GROUP BY {day}, tasks.agent",
        params,
    )
    if not rows:
        return [], {}
    first, last = min(int(r[0]) for r in rows), max(int(r[0]) for r in rows)
    days = [_EPOCH + dt.timedelta(days=n) for n in range(first, last + 1)]
    daily: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0)] * len(days))
    for n, agent, picos in rows:
        daily[agent][int(n) - first] = from_picos(int(picos))
    return days, dict(sorted(daily.items()))


def histogram(agent: str, ordered_picos: list[int], bins: int = HISTOGRAM_BINS) -> Histogram | None:
    """Log-spaced bins over an agent's ascending priced costs (free tasks in the first bin); None if none."""
    paid = [c for c in ordered_picos if c > 0]
    if not ordered_picos:
        return None
    mid_picos = median_picos(ordered_picos)
    lo, hi = (paid[0], paid[-1]) if paid else (1, 1)
    hi = max(hi, lo * 10)  # at least one decade, so a flat agent still spreads over the axis
    # Bin edges are for drawing only; the money in the report stays exact.
    step = (math.log10(hi) - math.log10(lo)) / bins
    edges_f = [10 ** (math.log10(lo) + i * step) for i in range(bins + 1)]
    counts = [0] * bins
    for c in ordered_picos:
        i = 0 if c <= lo else min(bins - 1, int((math.log10(c) - math.log10(lo)) / step))
        counts[i] += 1
    edges = [from_picos(max(1, round(e))) for e in edges_f]
    return Histogram(agent, edges, counts, (mid_picos / 10**12).normalize(), len(ordered_picos))


EVAL_TENANT = "eval"  # where `paymaster eval` records its tasks, each tagged with the tier it was pinned to


def eval_points(reader: Reader, scope: Scope) -> list[QualityPoint]:
    """Per tier of the eval records in the scope: success rate against cost per task, cheapest tier first.

    Success is the agent's own ``evaluate`` verdict as the ledger holds it; unpriced tasks are left out.
    """
    if scope.tenant not in (None, EVAL_TENANT):
        return []
    cond, params = where(reader, replace(scope, tenant=EVAL_TENANT))
    params["evaltier"] = "tier"
    tier = reader.tag_value("evaltier")
    rows = reader.rows(
        f"SELECT {tier}, COUNT(*), SUM(CASE WHEN tasks.success THEN 1 ELSE 0 END), SUM(tasks.cost_picos) "
        f"FROM tasks WHERE {cond} AND tasks.unpriced_calls = 0 AND {tier} IS NOT NULL GROUP BY {tier}",
        params,
    )
    points = [QualityPoint(str(t), int(n), int(ok), (from_picos(int(c)) / int(n)).quantize(Decimal("1e-12")))
              for t, n, ok, c in rows]
    return sorted(points, key=lambda p: (p.cost_per_task, p.tier))


def tier_split(reader: Reader, scope: Scope) -> list[TierSpend]:
    """Per tier: model calls made, tokens, cost and baseline of the scope's tasks (refused calls left out)."""
    cond, params = where(reader, scope)
    rows = reader.rows(
        "SELECT steps.tier, COUNT(*), COALESCE(SUM(steps.input_tokens + steps.output_tokens), 0), "
        "COALESCE(SUM(steps.cost_picos), 0), COALESCE(SUM(steps.baseline_picos), 0) "
        f"FROM steps JOIN tasks ON tasks.id = steps.task_id WHERE {cond} AND steps.status <> 'refused' "
        "AND steps.tier IS NOT NULL GROUP BY steps.tier",
        params,
    )
    out = [TierSpend(t, int(n), int(tok), from_picos(int(c)), from_picos(int(b))) for t, n, tok, c, b in rows]
    return sorted(out, key=lambda t: (-t.cost, t.tier or ""))


def report_dict(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data: money as decimal strings (exact), days as ISO dates."""
    s = report.summary
    scope = report.scope
    data: dict[str, Any] = {
        "ledger": report.url,
        "generated_at": report.generated_at.isoformat(),
        "scope": {
            "since": _iso(scope.since), "until": _iso(scope.until), "tenant": scope.tenant, "agent": scope.agent,
            "tags": dict(scope.tags),
        },
        "summary": {
            "tasks": s.tasks, "succeeded": s.succeeded, "unpriced_tasks": s.unpriced, "cost_usd": plain_usd(s.cost),
            "baseline_usd": plain_usd(s.baseline), "savings_usd": plain_usd(s.savings),
            "cost_per_success_usd": _money(s.cost_per_success), "cache_hits": s.cache_hits,
            "cache_saved_usd": plain_usd(s.cache_saved),
        },
        "cost_per_task": [
            {"agent": d.agent, "tasks": d.tasks, "unpriced_tasks": d.unpriced, "p50_usd": _money(d.p50),
             "p90_usd": _money(d.p90), "p99_usd": _money(d.p99), "max_usd": _money(d.max)}
            for d in report.distributions
        ],
        "top_spenders": {"by": report.by, "rows": [_spend(x) for x in report.top]},
        "showback": {key: [_spend(x) for x in rows] for key, rows in report.showback.items()},
        "anomalies": {
            "tasks_total": report.anomalies.task_count,
            "tasks": [
                {"task_id": a.task_id, "agent": a.agent, "tenant": a.tenant, "created_at": _iso(a.created_at),
                 "cost_usd": plain_usd(a.cost), "agent_median_usd": plain_usd(a.median)}
                for a in report.anomalies.tasks
            ],
            "days": [
                {"day": d.day.isoformat(), "cost_usd": plain_usd(d.cost), "mean_usd": plain_usd(d.mean),
                 "threshold_usd": plain_usd(d.threshold)}
                for d in report.anomalies.days
            ],
        },
        "unit_economics": None if report.economics is None else [_economics(e) for e in report.economics],
        "model_changes": None if report.changes is None else [_change(c) for c in report.changes],
        "shadow_quality": [shadow_day_dict(d) for d in report.shadow],
        "cap_raises": [
            {"agent": r.agent, "factor": str(r.factor), "from": _iso(r.starts_at), "until": _iso(r.ends_at),
             "reason": r.reason}
            for r in report.raises
        ],
    }
    return data


def _economics(e: AgentEconomics) -> dict[str, Any]:
    return {
        "agent": e.agent, "tasks": e.tasks, "succeeded": e.succeeded, "unpriced_tasks": e.unpriced,
        "cost_usd": plain_usd(e.cost), "cost_per_success_usd": _money(e.cost_per_success),
        "human_cost_usd": _money(e.human_cost), "roi": None if e.roi is None else str(e.roi),
        "input_tokens": e.input_tokens, "output_tokens": e.output_tokens,
        "token_efficiency": None if e.token_efficiency is None else str(e.token_efficiency),
        "over_human_cost": e.over_human_cost,
    }


def _change(c: Surge) -> dict[str, Any]:
    return {
        "agent": c.agent, "at": _iso(c.at), "task_id": c.task_id, "change": c.describe(),
        "tasks_before": c.tasks_before, "tasks_after": c.tasks_after, "cost_per_task_before_usd": _money(c.before),
        "cost_per_task_after_usd": _money(c.after), "ratio": None if c.ratio is None else str(c.ratio),
        "factor": str(c.factor), "surge": c.surged,
    }


def _spend(s: Spend) -> dict[str, Any]:
    return {"key": s.key, "tasks": s.tasks, "unpriced_tasks": s.unpriced, "cost_usd": plain_usd(s.cost)}


def _money(usd: Decimal | None) -> str | None:
    return None if usd is None else plain_usd(usd)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


def report_rows(report: Report) -> list[dict[str, Any]]:
    """The report as long-format rows (section, key, metric, value) for CSV: one figure per row."""
    data = report_dict(report)
    rows: list[dict[str, Any]] = [
        {"section": "summary", "key": "", "metric": k, "value": v} for k, v in data["summary"].items()
    ]
    for d in data["cost_per_task"]:
        rows += [{"section": "cost_per_task", "key": d["agent"], "metric": k, "value": v}
                 for k, v in d.items() if k != "agent"]
    for section, spends in [(f"top_spenders:{report.by}", data["top_spenders"]["rows"]),
                            *((f"showback:{k}", v) for k, v in data["showback"].items())]:
        for x in spends:
            rows += [{"section": section, "key": x["key"] if x["key"] is not None else "(untagged)", "metric": k,
                      "value": v} for k, v in x.items() if k != "key"]
    for a in data["anomalies"]["tasks"]:
        rows += [{"section": "anomalous_task", "key": a["task_id"], "metric": k, "value": v}
                 for k, v in a.items() if k != "task_id"]
    for d in data["anomalies"]["days"]:
        rows += [{"section": "anomalous_day", "key": d["day"], "metric": k, "value": v}
                 for k, v in d.items() if k != "day"]
    rows.append({"section": "anomalies", "key": "", "metric": "tasks_total", "value": data["anomalies"]["tasks_total"]})
    for e in data["unit_economics"] or []:
        rows += [{"section": "unit_economics", "key": e["agent"], "metric": k, "value": v}
                 for k, v in e.items() if k != "agent"]
    for d in data["shadow_quality"]:
        rows += [{"section": "shadow_quality", "key": d["day"], "metric": k, "value": v} for k, v in d.items()
                 if k != "day"]
    for c in data["model_changes"] or []:
        rows += [{"section": "model_change", "key": f"{c['agent']} {c['at']}", "metric": k, "value": v}
                 for k, v in c.items() if k not in ("agent", "at")]
    for r in data["cap_raises"]:
        rows += [{"section": "cap_raise", "key": f"{r['agent']} {r['from']}", "metric": k, "value": v}
                 for k, v in r.items() if k not in ("agent", "from")]
    return rows
