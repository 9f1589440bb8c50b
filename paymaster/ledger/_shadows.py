"""Shadow evaluation records: live subtasks re-run on a reference tier, and whether the two answers matched.

A shadow run is a task row of its own, so it never counts in the live task's
totals: its agent is the live agent's name with ``#shadow`` appended (a name no
agent can have), its parent is the live task, its calls are steps of kind
``eval`` (statements show them on the shared "evals" line), and its ``plan``
column holds the verdict and the tiers compared, never the outputs::

    {"shadow": {"of": LIVE_TASK, "subtask": "s1", "routed": "fast", "reference": "deep",
                "agreed": true, "scored_by": "judge on fast"}}
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .._money import from_picos, plain_usd, to_picos
from ._reader import Reader, as_reader, in_params
from ._scope import Scope, where

if TYPE_CHECKING:
    from ._ledger import Ledger

SHADOW_SUFFIX = "#shadow"


def shadow_agent(agent: str) -> str:
    """The agent name a shadow run of ``agent``'s subtasks is recorded under."""
    return agent + SHADOW_SUFFIX


@dataclass(frozen=True)
class ShadowRecord:
    """One shadowed subtask: which tiers were compared, whether the answers matched (None: unscored), its cost."""

    task_id: str
    live_task_id: str
    agent: str
    subtask: str
    routed: str
    reference: str
    agreed: bool | None
    scored_by: str
    status: str
    cost: Decimal
    created_at: float


@dataclass(frozen=True)
class ShadowDay:
    """One UTC day of shadow records: how many were scored, how many matched the reference, what they cost."""

    day: dt.date
    scored: int
    matched: int
    unscored: int
    cost: Decimal

    @property
    def quality(self) -> float | None:
        """The share of scored subtasks whose live answer matched the reference tier's."""
        return self.matched / self.scored if self.scored else None


def _plan(value: Any) -> dict[str, Any]:
    raw = json.loads(value) if isinstance(value, str) else value
    shadow = raw.get("shadow") if isinstance(raw, dict) else None
    return shadow if isinstance(shadow, dict) else {}


def shadow_records(source: Reader | Ledger, scope: Scope | None = None) -> list[ShadowRecord]:
    """The finished shadow runs in ``scope`` (its ``agent`` is the live agent's name), oldest first."""
    reader = as_reader(source)
    scope = scope or Scope()
    cond, params = where(reader, replace(scope, agent=None), shadows=True)
    if scope.agent is not None:
        cond += " AND tasks.agent = :shadowagent"
        params["shadowagent"] = shadow_agent(scope.agent)
    else:
        # The shadow agents' names first (a walk of the agent index), then their rows through it:
        # a suffix LIKE on every task row would read the whole table.
        agents = [str(a) for (a,) in reader.rows("SELECT tasks.agent FROM tasks GROUP BY tasks.agent")
                  if str(a).endswith(SHADOW_SUFFIX)]
        if not agents:
            return []
        names, values = in_params("shadowagent", agents)
        cond += f" AND tasks.agent IN {names}"
        params.update(values)
    rows = reader.rows(
        "SELECT tasks.id, tasks.agent, tasks.plan, tasks.success, tasks.status, tasks.cost_picos, tasks.created_at "
        f"FROM tasks WHERE {cond} ORDER BY tasks.created_at, tasks.id",
        params,
    )
    out = []
    for task_id, agent, plan, success, status, cost, created in rows:
        shadow = _plan(plan)
        out.append(ShadowRecord(
            task_id=str(task_id), live_task_id=str(shadow.get("of", "")), agent=str(agent)[: -len(SHADOW_SUFFIX)],
            subtask=str(shadow.get("subtask", "")), routed=str(shadow.get("routed", "")),
            reference=str(shadow.get("reference", "")), agreed=None if success is None else bool(success),
            scored_by=str(shadow.get("scored_by", "")), status=str(status), cost=from_picos(int(cost or 0)),
            created_at=float(created),
        ))
    return out


def shadow_texts(source: Reader | Ledger, records: Iterable[ShadowRecord]) -> dict[str, str]:
    """Each record's subtask text as the router saw it (its goal in the live task's plan), by shadow task id.

    A record whose live task or plan is gone is left out (its shadow row keeps only a 500-character preview).
    """
    reader = as_reader(source)
    wanted = list(records)
    plans: dict[str, dict[str, str]] = {}
    live = sorted({r.live_task_id for r in wanted})
    for start in range(0, len(live), 500):  # a bounded IN list: SQLite caps a statement's parameters
        names, values = in_params("live", live[start:start + 500])
        for task_id, plan in reader.rows(f"SELECT tasks.id, tasks.plan FROM tasks WHERE tasks.id IN {names}", values):
            raw = json.loads(plan) if isinstance(plan, str) else plan
            subtasks = raw.get("subtasks") if isinstance(raw, dict) else None
            plans[str(task_id)] = {str(s.get("id")): str(s.get("goal")) for s in subtasks or ()
                                   if isinstance(s, dict) and isinstance(s.get("goal"), str)}
    return {r.task_id: plans[r.live_task_id][r.subtask] for r in wanted
            if r.subtask in plans.get(r.live_task_id, {})}


def shadow_days(records: Iterable[ShadowRecord]) -> list[ShadowDay]:
    """The records per UTC day, oldest first: the router's measured quality over time."""
    days: dict[dt.date, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # scored, matched, unscored, picos
    for r in records:
        acc = days[dt.datetime.fromtimestamp(r.created_at, dt.UTC).date()]
        if r.agreed is None:
            acc[2] += 1
        else:
            acc[0] += 1
            acc[1] += int(r.agreed)
        acc[3] += to_picos(r.cost)
    return [ShadowDay(day, s, m, u, from_picos(p)) for day, (s, m, u, p) in sorted(days.items())]


def shadow_day_dict(day: ShadowDay) -> dict[str, Any]:
    """A day of shadow records as JSON-ready data (money as an exact decimal string)."""
    return {"day": day.day.isoformat(), "scored": day.scored, "matched": day.matched,
            "quality": None if day.quality is None else round(day.quality, 4), "unscored": day.unscored,
            "cost_usd": plain_usd(day.cost)}
