"""Rate limits in the ledger: admission rows, counted over a sliding window in one transaction.

A call is admitted under its rate keys (``agent:refund``, ``tenant:acme``,
``tool:search``) only if, for every rule of every key, what the rows of the
last ``window`` seconds count plus what the call needs stays within the
rule's limit; then a row per key records it. Check and insert run in one
write transaction that holds each key's anchor row (an uncapped account of
the same id) locked, so processes sharing the ledger, on SQLite or
PostgreSQL, admit one at a time per key and no window, anywhere in time,
ever counts more than the limit: unlike a token bucket, which lets a burst of
up to twice the rate through a window that straddles two refills.

Why not pyrate-limiter (4.x): its SQL buckets open connections of their own
(a ``sqlite3`` connection, a psycopg pool) and commit on them, so an admission
cannot share the ledger's writer thread and its transactions; its PostgreSQL
bucket refuses at once when another writer holds the table lock (contention
read as "over the rate"); and it stores a weighted item as that many unit rows,
so a token or pico-dollar rate would write thousands of rows per call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ._charges import Charge
from ._holds import ensure_tx
from ._writer import Tx, in_list, lock_accounts

RATE_DIMENSIONS = ("calls", "tool_calls", "tokens", "picos")
LONGEST_WINDOW_SECONDS = 3600.0  # rows older than this count in no window: they are pruned


@dataclass(frozen=True, slots=True)
class RateRule:
    """At most ``limit`` of ``dimension`` in any ``window`` seconds, under ``key``."""

    key: str
    dimension: str  # one of RATE_DIMENSIONS
    limit: int
    window: float


@dataclass(frozen=True, slots=True)
class RateRefusal:
    """Why a call was not admitted: the rule it would break, and the earliest time it could fit.

    ``retry_at`` is None when the call needs more than the rule ever allows.
    """

    rule: RateRule
    used: int
    needed: int
    retry_at: float | None


def anchors(keys: Sequence[str]) -> list[str]:
    """The account rows whose locks order admissions under ``keys`` (``rate:agent:refund``).

    Rows of their own, not the scope's budget account: admissions then never wait on budget holds
    (nor on a fleet's leases of that account), only on other admissions under the same key.
    """
    return [f"rate:{key}" for key in keys]


def admit_tx(
    tx: Tx, rules: Sequence[RateRule], needs: Mapping[str, Charge], now: float, task_id: str, *,
    ensure: bool = True, prune: bool = True,
) -> RateRefusal | None:
    """Record the call under every key of ``rules`` if each rule has room at ``now``; else the refusal.

    When several rules refuse, the one whose room comes last is returned: no retry can succeed before it.
    ``ensure``: create the keys' anchor rows first (once per key is enough: they are never deleted).
    ``prune``: delete the keys' rows that have left every window.
    """
    keys = sorted({rule.key for rule in rules})
    if ensure:
        ensure_tx(tx, dict.fromkeys(anchors(keys)))  # one uncapped account row per key, to lock
    lock_accounts(tx, anchors(keys))  # PostgreSQL: admissions of a key go one at a time (SQLite: one writer)
    worst: RateRefusal | None = None
    for key in keys:
        counted = [r for r in rules if r.key == key and getattr(needs[key], r.dimension)]
        for rule in counted:
            if getattr(needs[key], rule.dimension) > rule.limit:
                return RateRefusal(rule, 0, getattr(needs[key], rule.dimension), None)
        if not counted:
            continue
        # Every rule of the key in one scan of its rows in the longest window.
        sums = ", ".join(f"COALESCE(SUM(CASE WHEN at > :s{i} THEN {r.dimension} ELSE 0 END), 0)"
                         for i, r in enumerate(counted))
        params: dict[str, object] = {f"s{i}": now - r.window for i, r in enumerate(counted)}
        (row,) = tx.execute(
            f"SELECT {sums} FROM rate_admissions WHERE key = :key AND at > :since",
            {**params, "key": key, "since": now - max(r.window for r in counted)},
        ).fetchall()
        for rule, used in zip(counted, row, strict=True):
            needed = getattr(needs[key], rule.dimension)
            if int(used) + needed <= rule.limit:
                continue
            retry_at = _room_at(tx, rule, now - rule.window, int(used) + needed - rule.limit)
            if worst is None or (worst.retry_at or 0.0) < retry_at:
                worst = RateRefusal(rule, int(used), needed, retry_at)
    if worst is not None:
        return worst
    if prune:
        members, in_params = in_list("k", keys)
        tx.execute(
            f"DELETE FROM rate_admissions WHERE key IN {members} AND at <= :old",
            {**in_params, "old": now - LONGEST_WINDOW_SECONDS},
        )
    for key in keys:
        need = needs[key]
        tx.execute(
            "INSERT INTO rate_admissions (key, at, task_id, calls, tool_calls, tokens, picos) "
            "VALUES (:key, :at, :task_id, :calls, :tool_calls, :tokens, :picos)",
            {"key": key, "at": now, "task_id": task_id, "calls": need.calls, "tool_calls": need.tool_calls,
             "tokens": need.tokens, "picos": need.picos},
        )
    return None


def _room_at(tx: Tx, rule: RateRule, since: float, excess: int) -> float:
    """When enough of the window's oldest rows will have left it to free ``excess``."""
    rows = tx.execute(
        f"SELECT at, {rule.dimension} FROM rate_admissions WHERE key = :key AND at > :since ORDER BY at",
        {"key": rule.key, "since": since},
    ).fetchall()
    freed = 0
    for at, amount in rows:
        freed += int(amount)
        if freed >= excess:
            return float(at) + rule.window  # the row counts in (t - window, t]: it leaves at at + window
    return since + 2 * rule.window  # unreachable while excess <= the window's sum; a safe late answer
