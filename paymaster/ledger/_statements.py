"""Statements for showback and chargeback: what a tenant (or a tag) was charged in a month, line by line.

A charge belongs to the month its call was made in (the step's time, UTC),
like a provider's bill; a task that spans two months appears in both. A line
is an agent (or a tag's value): its model calls, tool calls, tokens and
direct cost. Planning, summarising, evals and aggregation serve every line,
so they are *shared*: either shown on lines of their own, or allocated to the
lines in proportion to their direct cost. Allocation is exact: integer
pico-dollars split by largest remainder, so the lines always add up to the
total to the pico-dollar.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from typing import Any, Literal

from .._money import PICOS_PER_USD, from_picos, plain_usd
from ._reader import Reader, in_params
from ._scope import Scope, where

SHARED_KINDS = {"plan": "planning", "summarise": "summarising", "eval": "evals", "aggregate": "aggregation"}
SharedMode = Literal["separate", "allocate"]
_PICO = Decimal(1) / PICOS_PER_USD


@dataclass(frozen=True)
class StatementLine:
    """One line of a statement: an agent or tag value (or a shared kind), its usage and its charges."""

    name: str  # the agent or tag value; "shared: planning" etc. for shared lines; "(untagged)" when by tag
    shared: bool
    tasks: int
    outcomes: int  # tasks that succeeded
    calls: int  # model calls made (refused ones are not)
    tool_calls: int
    input_tokens: int
    output_tokens: int
    unpriced_calls: int  # calls of unknown price: their cost is not in ``direct``
    direct: Decimal
    allocated: Decimal = Decimal(0)  # this line's share of the shared costs (allocate mode)

    @property
    def total(self) -> Decimal:
        """Direct cost plus allocated shared cost."""
        return self.direct + self.allocated

    @property
    def cost_per_outcome(self) -> Decimal | None:
        """Total cost per successful task, rounded up to the pico-dollar (None without outcomes)."""
        if self.shared or not self.outcomes:
            return None
        return (self.total / self.outcomes).quantize(_PICO, rounding=ROUND_CEILING).normalize()


@dataclass(frozen=True)
class Statement:
    """A month's charges for a tenant and/or tags, one line per agent or tag value."""

    month: str  # YYYY-MM
    tenant: str | None
    tags: Mapping[str, str]
    by: str  # "agent" or "tag:KEY"
    shared_mode: SharedMode
    lines: list[StatementLine]
    url: str = ""
    shared_by_kind: dict[str, Decimal] = field(default_factory=dict)

    @property
    def total(self) -> Decimal:
        """Everything charged in the month (known prices), shared costs included."""
        return sum((line.total for line in self.lines), Decimal(0))


def month_bounds(month: str) -> tuple[float, float]:
    """Epoch seconds of the first instant of a ``YYYY-MM`` month (UTC) and of the next month."""
    try:
        first = dt.datetime.strptime(month.strip(), "%Y-%m").replace(tzinfo=dt.UTC)
    except ValueError:
        raise ValueError(f"a month is YYYY-MM, like 2026-11; got {month!r}") from None
    following = (first + dt.timedelta(days=32)).replace(day=1)
    return first.timestamp(), following.timestamp()


def statement(
    reader: Reader, month: str, *, tenant: str | None = None, tags: Mapping[str, str] | None = None,
    by: str = "agent", shared: SharedMode = "separate",
) -> Statement:
    """The statement of ``month`` (YYYY-MM) for a tenant and/or tags, lines by agent or ``tag:KEY``."""
    start, end = month_bounds(month)
    if by != "agent" and not (by.startswith("tag:") and len(by) > 4):
        raise ValueError(f"statement lines are by 'agent' or 'tag:KEY', not {by!r}")
    if shared not in ("separate", "allocate"):
        raise ValueError(f"shared costs are 'separate' or 'allocate', not {shared!r}")
    # Shadow evaluation runs count on the shared evals line (their steps are of kind eval), not as tasks.
    cond, params = where(reader, Scope(tenant=tenant, tags=dict(tags or {})), finished=False, shadows=True)
    params.update(start=start, end=end, shadowlike="%#shadow")
    if by == "agent":
        group = "tasks.agent"
    else:
        params["linekey"] = by[4:]
        group = reader.tag_value("linekey")
    shared_in, shared_params = in_params("sk", list(SHARED_KINDS))
    params.update(shared_params)
    with reader.snapshot():  # the lines and the task counts from one state of the ledger
        return _query(reader, month, tenant, dict(tags or {}), by, shared, group, shared_in, cond, params)


def _query(
    reader: Reader, month: str, tenant: str | None, tags: dict[str, str], by: str, shared: SharedMode, group: str,
    shared_in: str, cond: str, params: dict[str, Any],
) -> Statement:
    rows = reader.rows(
        f"SELECT {group}, CASE WHEN steps.kind IN {shared_in} THEN steps.kind ELSE '' END, "
        "SUM(CASE WHEN steps.kind NOT IN ('tool', 'cache_hit') THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN steps.kind = 'tool' THEN 1 ELSE 0 END), "
        "COALESCE(SUM(steps.input_tokens), 0), COALESCE(SUM(steps.output_tokens), 0), "
        "SUM(CASE WHEN steps.cost_picos IS NULL THEN 1 ELSE 0 END), COALESCE(SUM(steps.cost_picos), 0) "
        f"FROM steps JOIN tasks ON tasks.id = steps.task_id WHERE {cond} AND steps.created_at >= :start "
        "AND steps.created_at < :end AND steps.status <> 'refused' GROUP BY 1, 2",
        params,
    )
    tasks = {
        key: (int(n), int(ok)) for key, n, ok in reader.rows(
            f"SELECT {group}, COUNT(*), SUM(CASE WHEN tasks.success THEN 1 ELSE 0 END) FROM tasks WHERE {cond} "
            "AND tasks.agent NOT LIKE :shadowlike AND tasks.id IN (SELECT steps.task_id FROM steps "
            "WHERE steps.created_at >= :start AND steps.created_at < :end) GROUP BY 1",
            params,
        )
    }
    return _build(month, tenant, tags, by, shared, rows, tasks, reader.url)


def _build(
    month: str, tenant: str | None, tags: dict[str, str], by: str, mode: SharedMode,
    rows: Sequence[tuple[Any, ...]], tasks: Mapping[Any, tuple[int, int]], url: str,
) -> Statement:
    direct: dict[str, list[int]] = defaultdict(lambda: [0] * 6)  # calls, tools, in, out, unpriced, picos
    shared: dict[str, list[int]] = defaultdict(lambda: [0] * 6)
    untagged = "(untagged)"
    for key, kind, *figures in rows:
        name = untagged if key is None else str(key)
        acc = shared[kind] if kind else direct[name]
        for i, v in enumerate(figures):
            acc[i] += int(v or 0)
        if kind and not name.endswith("#shadow"):
            direct.setdefault(name, [0] * 6)  # a line that only planned still has a line (not a shadow run's)
    names = sorted(direct, key=lambda n: (n == untagged, n))
    pool = sum(acc[5] for acc in shared.values())
    weights = [direct[n][5] for n in names] if any(direct[n][5] for n in names) else [1] * len(names)
    allocated = allocate(pool, weights) if mode == "allocate" and names else [0] * len(names)
    lines = []
    for n, extra in zip(names, allocated, strict=True):
        calls, tools, t_in, t_out, unpriced, picos = direct[n]
        n_tasks, ok = tasks.get(None if n == untagged else n, (0, 0))
        lines.append(StatementLine(n, False, n_tasks, ok, calls, tools, t_in, t_out, unpriced, from_picos(picos),
                                   from_picos(extra)))
    if mode == "separate" or not names:
        for kind, label in SHARED_KINDS.items():
            if kind in shared:
                calls, tools, t_in, t_out, unpriced, picos = shared[kind]
                lines.append(StatementLine(f"shared: {label}", True, 0, 0, calls, tools, t_in, t_out, unpriced,
                                           from_picos(picos)))
    by_kind = {SHARED_KINDS[k]: from_picos(acc[5]) for k, acc in shared.items()}
    return Statement(month, tenant, tags, by, mode, lines, url, by_kind)


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split integer ``total`` in proportion to ``weights`` by largest remainder; the parts sum to ``total``."""
    if not weights:
        raise ValueError("allocate needs at least one weight")
    whole = sum(weights)
    if whole <= 0:
        raise ValueError("allocate needs a positive total weight")
    parts = [total * w // whole for w in weights]
    remainders = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in remainders[: total - sum(parts)]:
        parts[i] += 1
    return parts


def statement_dict(s: Statement) -> dict[str, Any]:
    """The statement as JSON-ready data (money as exact decimal strings)."""
    return {
        "ledger": s.url, "month": s.month, "tenant": s.tenant, "tags": dict(s.tags), "lines_by": s.by,
        "shared_costs": s.shared_mode, "total_usd": plain_usd(s.total),
        "shared_by_kind_usd": {k: plain_usd(v) for k, v in s.shared_by_kind.items()},
        "lines": [line_dict(line) for line in s.lines],
    }


LINE_COLUMNS = ("line", "shared", "tasks", "outcomes", "calls", "tool_calls", "input_tokens", "output_tokens",
                "unpriced_calls", "direct_usd", "allocated_usd", "total_usd", "cost_per_outcome_usd")


def line_dict(line: StatementLine) -> dict[str, Any]:
    """One statement line as a flat row (the CSV columns)."""
    cpo = line.cost_per_outcome
    return {
        "line": line.name, "shared": line.shared, "tasks": line.tasks, "outcomes": line.outcomes,
        "calls": line.calls, "tool_calls": line.tool_calls, "input_tokens": line.input_tokens,
        "output_tokens": line.output_tokens, "unpriced_calls": line.unpriced_calls,
        "direct_usd": plain_usd(line.direct), "allocated_usd": plain_usd(line.allocated),
        "total_usd": plain_usd(line.total),
        "cost_per_outcome_usd": None if cpo is None else plain_usd(cpo),
    }
