"""Unit economics and model-change surges: is an agent worth its cost, and did a change make it dearer?

Unit economics, per agent over a scope: cost per successful outcome (everything
spent, failures too, over the priced successes, as in ``Summary``), compared
with the cost of a human doing the same outcome: the ``human_cost_usd`` the
agent declared, recorded on each of its tasks (the latest in the scope counts),
or a figure given at report time, which wins. ROI = (human cost - agent
cost per success) / agent cost per success. The token efficiency ratio is the
agent's output tokens over all its tokens (input + output, summed over every
call of its tasks): the share of what it paid for that it produced rather than
read. An agent whose cost per successful outcome exceeds the human cost, or
that spent money without a single success, is flagged.

Surges: a change is when an agent's tasks start being served by another model
on a tier, or start running another agent version. Each change is dated by the
first task that used the new model or version, and it counts only if the new
one stays in use at least as late as the old one (a one-off fallback is not a
change). Cost per task (priced finished tasks) is compared between the tasks
since the previous change and the tasks up to the next one; a ratio above the
factor (default 1.5) with at least ``min_tasks`` on each side is a surge,
attributed to every change dated by that same task. A change whose "before"
tasks cost nothing is not judged (no ratio exists).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import TYPE_CHECKING

from .._money import PICOS_PER_USD, from_picos
from ._reader import Reader, as_reader
from ._scope import Scope, where

if TYPE_CHECKING:
    from ._ledger import Ledger

    Source = Ledger | Reader

SURGE_FACTOR = Decimal("1.5")
SURGE_MIN_TASKS = 3  # a cost per task over fewer tasks says too little to judge a change by
_PICO = Decimal(1) / PICOS_PER_USD
_RATIO = Decimal("0.0001")  # ratios are shown to four decimals; money stays exact
_PRICED = "tasks.unpriced_calls = 0"


def parse_human_cost(value: object, what: str = "human_cost_usd") -> Decimal | None:
    """A human cost per outcome as Decimal dollars (None stays None); ValueError if not a non-negative amount."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError(f"{what} must be a dollar amount as a string such as \"8.50\", got {value!r}")
    try:
        usd = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{what} must be a dollar amount such as \"8.50\", got {value!r}") from None
    if not usd.is_finite() or usd < 0:
        raise ValueError(f"{what} must be a non-negative dollar amount such as \"8.50\", got {value!r}")
    return usd


@dataclass(frozen=True)
class AgentEconomics:
    """One agent's unit economics over a scope; the human-cost figures are None when no human cost was given."""

    agent: str
    tasks: int
    succeeded: int
    unpriced: int
    cost: Decimal  # priced tasks only
    priced_succeeded: int
    input_tokens: int
    output_tokens: int
    human_cost: Decimal | None = None

    @property
    def cost_per_success(self) -> Decimal | None:
        """Everything spent per successful outcome, rounded up to the pico-dollar (None without successes)."""
        if not self.priced_succeeded:
            return None
        return (self.cost / self.priced_succeeded).quantize(_PICO, rounding=ROUND_CEILING).normalize()

    @property
    def roi(self) -> Decimal | None:
        """(human cost - cost per success) / cost per success, to four decimals; None if either is unknown or free."""
        per = self.cost_per_success
        if self.human_cost is None or not per:
            return None
        return ((self.human_cost - per) / per).quantize(_RATIO, rounding=ROUND_HALF_EVEN)

    @property
    def token_efficiency(self) -> Decimal | None:
        """Output tokens over all tokens (input + output) of its tasks, to four decimals; None without tokens."""
        total = self.input_tokens + self.output_tokens
        if not total:
            return None
        return (Decimal(self.output_tokens) / total).quantize(_RATIO, rounding=ROUND_HALF_EVEN)

    @property
    def over_human_cost(self) -> bool:
        """Whether an outcome costs more from this agent than from a human (or it spent without succeeding)."""
        if self.human_cost is None:
            return False
        per = self.cost_per_success
        return self.cost > 0 if per is None else per > self.human_cost


def unit_economics(
    source: Source, scope: Scope | None = None, human_costs: Mapping[str, Decimal] | None = None
) -> list[AgentEconomics]:
    """Per agent with a finished task in the scope (name order): cost per success, ROI against
    ``human_costs[agent]`` (dollars per outcome) where given, token efficiency, and the over-human flag."""
    reader = as_reader(source)
    cond, params = where(reader, scope or Scope())
    rows = reader.rows(
        "SELECT tasks.agent, COUNT(*), COALESCE(SUM(CASE WHEN tasks.success THEN 1 ELSE 0 END), 0), "
        "COALESCE(SUM(CASE WHEN tasks.unpriced_calls > 0 THEN 1 ELSE 0 END), 0), "
        f"COALESCE(SUM(CASE WHEN {_PRICED} THEN tasks.cost_picos ELSE 0 END), 0), "
        f"COALESCE(SUM(CASE WHEN tasks.success AND {_PRICED} THEN 1 ELSE 0 END), 0), "
        "COALESCE(SUM(tasks.input_tokens), 0), COALESCE(SUM(tasks.output_tokens), 0) "
        f"FROM tasks WHERE {cond} GROUP BY tasks.agent ORDER BY tasks.agent",
        params,
    )
    costs = human_costs or {}
    return [
        AgentEconomics(str(agent), int(n), int(ok), int(unpriced), from_picos(int(picos)), int(priced_ok),
                       int(tin), int(tout), costs.get(str(agent)))
        for agent, n, ok, unpriced, picos, priced_ok, tin, tout in rows
    ]


def recorded_human_costs(source: Source, scope: Scope | None = None) -> dict[str, Decimal]:
    """Per agent, the human cost per outcome its latest task in the scope recorded (agents that declared one)."""
    reader = as_reader(source)
    if reader.dialect == "sqlite" and not any(
        row[1] == "human_cost_picos" for row in reader.rows("PRAGMA table_info(tasks)")
    ):
        return {}  # a ledger written before tasks recorded it (read as it is: readers do not upgrade it)
    cond, params = where(reader, scope or Scope())
    rows = reader.rows(
        "SELECT t.agent, t.human_cost_picos FROM tasks t JOIN (SELECT tasks.agent AS agent, MAX(tasks.created_at) "
        f"AS latest FROM tasks WHERE {cond} AND tasks.human_cost_picos IS NOT NULL GROUP BY tasks.agent) m "
        "ON t.agent = m.agent AND t.created_at = m.latest WHERE t.human_cost_picos IS NOT NULL",
        params,
    )
    return {str(agent): from_picos(int(picos)) for agent, picos in rows}


@dataclass(frozen=True)
class Change:
    """One thing that changed for an agent: its version, or the model serving one of its tiers."""

    what: str  # "version" or "model on tier NAME"
    old: str
    new: str

    def __str__(self) -> str:
        return f"{self.what}: {self.old} -> {self.new}"


@dataclass(frozen=True)
class Surge:
    """Cost per task before and after the changes first used by one task, and whether it jumped past the factor."""

    agent: str
    at: float  # created_at of the first task with the change (epoch seconds)
    task_id: str
    changes: tuple[Change, ...]
    tasks_before: int
    tasks_after: int
    before: Decimal | None  # mean cost per priced task since the previous change (None: no priced task)
    after: Decimal | None  # and up to the next change
    factor: Decimal

    @property
    def ratio(self) -> Decimal | None:
        """After over before, to four decimals (None when either side is unknown or before was free)."""
        if self.before is None or self.after is None or not self.before:
            return None
        return (self.after / self.before).quantize(_RATIO, rounding=ROUND_HALF_EVEN)

    @property
    def judged(self) -> bool:
        """Whether both sides had enough priced tasks, and a cost before, to compare."""
        return self.ratio is not None and min(self.tasks_before, self.tasks_after) >= SURGE_MIN_TASKS

    @property
    def surged(self) -> bool:
        """Whether cost per task rose past ``factor`` times what it was before the change."""
        if not self.judged or self.before is None or self.after is None:
            return False
        return self.after > self.factor * self.before

    def describe(self) -> str:
        """The changes in words: "version: 1 -> 2; model on tier fast: a -> b"."""
        return "; ".join(str(c) for c in self.changes)


def model_changes(
    source: Source, scope: Scope | None = None, *, factor: Decimal = SURGE_FACTOR
) -> list[Surge]:
    """Every change of model (per tier) or version per agent in the scope, with cost per task either side,
    oldest first per agent (agents in name order); ``surged`` marks the jumps past ``factor``."""
    if factor <= 0:
        raise ValueError(f"the surge factor must be above zero, got {factor}")
    reader = as_reader(source)
    scope = scope or Scope()
    cond, params = where(reader, scope)
    # What each agent ran: (first task, last task) per version and per (tier, model).
    seen: dict[str, dict[str, list[tuple[float, float, str]]]] = defaultdict(lambda: defaultdict(list))
    for agent, version, first, last in reader.rows(
        "SELECT tasks.agent, tasks.agent_version, MIN(tasks.created_at), MAX(tasks.created_at) "
        f"FROM tasks WHERE {cond} GROUP BY tasks.agent, tasks.agent_version",
        params,
    ):
        seen[str(agent)]["version"].append((float(first), float(last), str(version)))
    for agent, tier, model, first, last in reader.rows(
        "SELECT tasks.agent, steps.tier, steps.model, MIN(tasks.created_at), MAX(tasks.created_at) "
        f"FROM steps JOIN tasks ON tasks.id = steps.task_id WHERE {cond} AND steps.model IS NOT NULL "
        "AND steps.tier IS NOT NULL AND steps.status <> 'refused' AND steps.kind <> 'cache_hit' "
        "GROUP BY tasks.agent, steps.tier, steps.model",
        params,
    ):
        seen[str(agent)][f"model on tier {tier}"].append((float(first), float(last), str(model)))
    out: list[Surge] = []
    for agent in sorted(seen):
        changes: dict[float, list[Change]] = defaultdict(list)
        for what, runs in sorted(seen[agent].items()):
            runs.sort()
            current = runs[0]
            for new in runs[1:]:
                if new[1] >= current[1] and new[0] > current[0]:  # the new one took over, not a one-off
                    changes[new[0]].append(Change(what, current[2], new[2]))
                    current = new
        if changes:
            out += _judge(reader, scope, agent, changes, factor)
    return out


def _judge(
    reader: Reader, scope: Scope, agent: str, changes: Mapping[float, list[Change]], factor: Decimal
) -> list[Surge]:
    """Cost per priced task in each stretch between changes, one grouped query per agent that changed."""
    cond, params = where(reader, Scope(scope.since, scope.until, scope.tenant, agent, scope.tags))
    times = sorted(changes)
    cases = " ".join(f"WHEN tasks.created_at < :cut{i} THEN {i}" for i in range(len(times)))
    params.update({f"cut{i}": t for i, t in enumerate(times)})
    stretch = f"CASE {cases} ELSE {len(times)} END"
    costs = {
        int(i): (int(n), int(picos))
        for i, n, picos in reader.rows(
            f"SELECT {stretch}, COUNT(*), COALESCE(SUM(tasks.cost_picos), 0) FROM tasks "
            f"WHERE {cond} AND {_PRICED} GROUP BY 1",  # by position: the CASE holds parameters
            params,
        )
    }
    firsts = {
        float(at): str(task_id)
        for at, task_id in reader.rows(
            f"SELECT tasks.created_at, MIN(tasks.id) FROM tasks WHERE {cond} AND tasks.created_at IN "
            f"({', '.join(f':cut{i}' for i in range(len(times)))}) GROUP BY tasks.created_at",
            params,
        )
    }
    out = []
    for i, at in enumerate(times):
        (nb, before), (na, after) = costs.get(i, (0, 0)), costs.get(i + 1, (0, 0))
        out.append(Surge(
            agent, at, firsts.get(at, ""), tuple(changes[at]), nb, na,
            _mean(before, nb), _mean(after, na), factor,
        ))
    return out


def _mean(picos: int, n: int) -> Decimal | None:
    return (from_picos(picos) / n).quantize(_PICO, rounding=ROUND_CEILING).normalize() if n else None


def surges(source: Source, scope: Scope | None = None, *, factor: Decimal = SURGE_FACTOR) -> list[Surge]:
    """Only the changes after which cost per task rose past ``factor`` times what it was."""
    return [s for s in model_changes(source, scope, factor=factor) if s.surged]
