"""Temporary cap raises: ledger events that let an agent's tasks spend more for a bounded time.

A surge alert (``telemetry.SurgeAlerts(raise_caps=...)``) may raise the agent's
task caps while someone looks into the change that made its tasks dearer. The
raise is a row (agent, factor, start, end, reason), so every process sharing
the ledger applies it, it ends by itself, and ``paymaster report`` lists it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from ._reader import Reader, as_reader
from ._scope import Scope
from ._writer import Tx

if TYPE_CHECKING:
    from ._ledger import Ledger


@dataclass(frozen=True)
class CapRaise:
    """An agent's task caps times ``factor`` from ``starts_at`` until ``ends_at`` (epoch seconds), and why."""

    agent: str
    factor: Decimal
    starts_at: float
    ends_at: float
    reason: str


def record_raise_tx(tx: Tx, raise_: CapRaise) -> None:
    """Write one cap raise."""
    tx.execute(
        "INSERT INTO cap_raises (agent, factor, starts_at, ends_at, reason) "
        "VALUES (:agent, :factor, :starts_at, :ends_at, :reason)",
        {"agent": raise_.agent, "factor": str(raise_.factor), "starts_at": raise_.starts_at,
         "ends_at": raise_.ends_at, "reason": raise_.reason},
    )


def active_raises_tx(tx: Tx, now: float) -> dict[str, Decimal]:
    """Per agent, the largest raise in force at ``now``."""
    rows = tx.execute(
        "SELECT agent, factor FROM cap_raises WHERE starts_at <= :now AND ends_at > :now", {"now": now}
    ).fetchall()
    found: dict[str, Decimal] = {}
    for agent, factor in rows:
        found[str(agent)] = max(found.get(str(agent), Decimal(1)), Decimal(factor))
    return found


def cap_raises(source: Ledger | Reader, scope: Scope | None = None) -> list[CapRaise]:
    """The raises in force at some time in the scope (of its agent, if it names one), oldest first."""
    reader = as_reader(source)
    if reader.dialect == "sqlite" and not reader.rows(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'cap_raises'"
    ):
        return []  # a ledger from before cap raises (readers do not upgrade it)
    scope = scope or Scope()
    conds: list[str] = ["1 = 1"]
    params: dict[str, object] = {}
    if scope.since is not None:
        conds.append("ends_at > :since")
        params["since"] = scope.since
    if scope.until is not None:
        conds.append("starts_at < :until")
        params["until"] = scope.until
    if scope.agent is not None:
        conds.append("agent = :agent")
        params["agent"] = scope.agent
    rows = reader.rows(
        f"SELECT agent, factor, starts_at, ends_at, reason FROM cap_raises WHERE {' AND '.join(conds)} "
        "ORDER BY starts_at, id", params,
    )
    return [CapRaise(str(a), Decimal(f), float(s), float(e), str(r)) for a, f, s, e, r in rows]
