"""What live anomaly checks compare against, read from the ledger: recent task costs and daily spend.

One read per refresh, on a worker thread (never on the event loop, never on the
ledger's writer thread): a SQLite ledger is read through its own read-only
connection, which does not wait for the writer (WAL), and the rules are the
report's (``paymaster report``): 3x an agent's median over at least 5 tasks, and
a day over mean + 2 sigma of the 30 before it, with at least 7 days of history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from ..ledger._queries import DAY_MIN_HISTORY, DAY_SIGMAS, DAY_WINDOW, TASK_MIN_PEERS, median_picos
from ..ledger._reader import OPEN_STATUSES, Reader

if TYPE_CHECKING:
    from ..ledger import Ledger

DAY_SECONDS = 86_400
_FINISHED_PRICED = f"status NOT IN ({', '.join(repr(s) for s in OPEN_STATUSES)}) AND unpriced_calls = 0"


@dataclass(frozen=True)
class History:
    """A snapshot of the ledger for live checks; replaced whole on each refresh, never changed."""

    read_at: float = 0.0  # when the read began: tasks finished before then are in it
    day: int = -1  # the UTC day number that ``today`` and ``day_limits`` are for
    medians: dict[str, Decimal] = field(default_factory=dict)  # agent -> median cost of recent tasks, picos
    day_limits: dict[tuple[str, str], Decimal] = field(default_factory=dict)  # (agent, tenant) -> mean + 2 sigma
    today: dict[tuple[str, str], int] = field(default_factory=dict)  # (agent, tenant) -> finished spend today


def read_history(ledger: Ledger, recent: int, now: float | None = None) -> History:
    """Read the medians of each agent's last ``recent`` finished tasks and each (agent, tenant)'s daily spend."""
    read_at = time.time() if now is None else now
    today = int(read_at // DAY_SECONDS)
    with Reader(ledger) as reader:
        costs = reader.rows(
            "SELECT agent, cost_picos FROM (SELECT agent, cost_picos, ROW_NUMBER() OVER "
            f"(PARTITION BY agent ORDER BY created_at DESC) AS n FROM tasks WHERE {_FINISHED_PRICED}) AS recent "
            "WHERE n <= :recent",
            {"recent": recent},
        )
        day = reader.utc_day("created_at")
        days = reader.rows(
            f"SELECT agent, tenant, {day}, SUM(cost_picos) FROM tasks WHERE created_at >= :since "
            f"AND {_FINISHED_PRICED} GROUP BY agent, tenant, {day}",
            {"since": float((today - DAY_WINDOW) * DAY_SECONDS)},
        )
    by_agent: dict[str, list[int]] = {}
    for agent, cost in costs:
        by_agent.setdefault(agent, []).append(int(cost))
    medians = {
        agent: median_picos(sorted(values)) for agent, values in by_agent.items() if len(values) >= TASK_MIN_PEERS
    }
    spend: dict[tuple[str, str], dict[int, int]] = {}
    for agent, tenant, number, picos in days:
        spend.setdefault((agent, tenant), {})[int(number)] = int(picos)
    limits = {key: limit for key, totals in spend.items() if (limit := day_limit(totals, today)) is not None}
    return History(
        read_at=read_at, day=today, medians=medians, day_limits=limits,
        today={key: totals[today] for key, totals in spend.items() if today in totals},
    )


def day_limit(totals: dict[int, int], today: int) -> Decimal | None:
    """Mean + 2 sigma of the 30 days before ``today`` in pico-dollars (quiet days after the first count as 0)."""
    before = [d for d in totals if d < today]
    if not before:
        return None
    start = min(before)
    prev = [Decimal(totals.get(d, 0)) for d in range(today - DAY_WINDOW, today) if d >= start]
    if len(prev) < DAY_MIN_HISTORY:
        return None
    mean = sum(prev, Decimal(0)) / len(prev)
    sigma = (sum(((x - mean) ** 2 for x in prev), Decimal(0)) / len(prev)).sqrt()
    return mean + DAY_SIGMAS * sigma
