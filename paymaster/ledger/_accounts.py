"""Budget accounts: atomic reservations across a chain of accounts, settlement, alerts, kills, recovery.

An account row holds caps, ``spent`` and ``reserved`` for four dimensions
(pico-dollars, tokens, model calls, tool calls). Reserving is one conditional
UPDATE over every account of the chain inside one write transaction: if any
row refuses, nothing is held. Settling moves the hold to ``spent`` in the same
transaction that writes the step row, so there is never a paid call without
its row, nor a row without its charge.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

from pydantic_core import PydanticUndefined

from ..errors import LedgerError
from ._leases import LeaseBook, acquire_tx, forget_hold, leasable, return_tx, take_tx
from ._leases import settle_tx as settle_leases_tx
from ._sql import SqlRunner, Tx
from ._tables import StepRecord
from ._writer import Pending, in_list

RESERVATION_TTL_SECONDS = 15 * 60
HOST = socket.gethostname()
DIMENSIONS = ("picos", "tokens", "calls", "tool_calls")


@dataclass(frozen=True, slots=True)
class Charge:
    """An amount held or spent: pico-dollars, tokens, model calls and tool calls."""

    picos: int = 0
    tokens: int = 0
    calls: int = 0
    tool_calls: int = 0


@dataclass(frozen=True, slots=True)
class Caps:
    """Limits of one account; ``None`` means unlimited."""

    picos: int | None = None
    tokens: int | None = None
    calls: int | None = None
    tool_calls: int | None = None


@dataclass(frozen=True, slots=True)
class Reservation:
    """A hold on every account of a chain, to be settled once the call's cost is known."""

    id: str
    accounts: tuple[str, ...]
    held: Charge
    direct: tuple[str, ...] | None = None  # the accounts whose rows hold it (None: all); the rest via leases
    leases: tuple[str, ...] = ()  # the leases (of this worker) that hold it on shared accounts

    @property
    def rows(self) -> tuple[str, ...]:
        """The accounts whose own rows this reservation changes (the ones to lock)."""
        return self.accounts if self.direct is None else self.direct


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a reservation did not fit: the account and the cap it would have passed (or a kill)."""

    account: str
    dimension: str  # "usd", "tokens", "steps", "tool_calls" or "killed" (named as on a Budget)
    cap: int
    used: int  # spent + reserved at the time of the refusal
    needed: int
    spent: int = 0  # of ``used``, what is settled; the rest is held by calls in flight

    @property
    def remaining(self) -> int:
        """What was still free on the refusing account, in the dimension's unit."""
        return max(self.cap - self.used, 0)

    @property
    def transient(self) -> bool:
        """True when the call would fit once the calls in flight settle (they hold their worst case)."""
        return self.dimension != "killed" and self.spent + self.needed <= self.cap < self.used + self.needed


@dataclass(frozen=True, slots=True)
class Alert:
    """Something a person should know: a cap nearly used up, or a provider that misbehaved.

    ``kind`` is ``"cap"`` (an account's spend passed ``threshold`` of its cap in
    ``dimension``; fired once per threshold), ``"served_model"`` (a provider
    served a pricier model than the one asked for), ``"model_rejected"`` (a
    tier got a model it does not accept) or ``"max_tokens_ignored"`` (a reply
    longer than its ``max_tokens``). For provider alerts ``account`` is
    ``tier:NAME`` and ``message`` says what happened.
    """

    account: str
    dimension: str
    threshold: float
    spent: int
    cap: int
    kind: str = "cap"
    message: str = ""


_SET_HOLD = ", ".join(f"reserved_{d} = reserved_{d} + :{d}" for d in DIMENSIONS)
_FITS = " AND ".join(f"(cap_{d} IS NULL OR spent_{d} + reserved_{d} + :{d} <= cap_{d})" for d in DIMENSIONS)
_SET_SETTLE = ", ".join(
    f"reserved_{d} = reserved_{d} - :held_{d}, spent_{d} = spent_{d} + :{d}" for d in DIMENSIONS
)
_RETURN = ", ".join(f"spent_{d}, cap_{d}" for d in DIMENSIONS)
_UNIT = {"picos": "usd", "tokens": "tokens", "calls": "steps", "tool_calls": "tool_calls"}
_STEP_COLUMNS = [c for c in StepRecord.model_fields if c != "id"]
_STEP_DEFAULTS = {
    c: f.default for c, f in StepRecord.model_fields.items() if c != "id" and f.default is not PydanticUndefined
}
_INSERT_STEP = (
    f"INSERT INTO steps ({', '.join(_STEP_COLUMNS)}) VALUES ({', '.join(':' + c for c in _STEP_COLUMNS)})"
)
_INSERT_RESERVATION = (
    "INSERT INTO reservations (id, task_id, accounts, picos, tokens, calls, tool_calls, kind, subtask_id,"
    " provider, model, tier, host, pid, created_at, expires_at, owner, leases) VALUES (:id, :task_id, :accounts,"
    " :picos, :tokens, :calls, :tool_calls, :kind, :subtask_id, :provider, :model, :tier, :host, :pid, :created_at,"
    " :expires_at, :owner, :leases)"
)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def insert_step(tx: Tx, step: Mapping[str, Any]) -> None:
    """Write one step row (every column, defaults filled in)."""
    tx.execute(_INSERT_STEP, {**_STEP_DEFAULTS, **step})


def ensure_tx(tx: Tx, accounts: Mapping[str, Caps | None]) -> None:
    """Create missing accounts; an account given caps gets exactly those caps (config wins)."""
    for capped in (True, False):  # one statement for those that set caps, one for those that keep theirs
        rows = sorted((a, c) for a, c in accounts.items() if (c is not None) == capped)  # sorted: no crossing
        if rows:
            params: dict[str, Any] = {}
            for i, (account_id, caps) in enumerate(rows):
                c = caps or _NO_CAPS
                params.update({f"id{i}": account_id, f"c{i}_picos": c.picos, f"c{i}_tokens": c.tokens,
                               f"c{i}_calls": c.calls, f"c{i}_tool_calls": c.tool_calls})
            tx.execute(_upsert_accounts(len(rows), capped), params)


_NO_CAPS = Caps()


@lru_cache(maxsize=64)
def _upsert_accounts(n: int, capped: bool) -> str:
    cols = ", ".join(f"cap_{d}" for d in DIMENSIONS)
    values = ", ".join("(:id{i}, {caps})".format(i=i, caps=", ".join(f":c{i}_{d}" for d in DIMENSIONS))
                       for i in range(n))
    update = "DO UPDATE SET " + ", ".join(f"cap_{d} = excluded.cap_{d}" for d in DIMENSIONS) if capped else "DO NOTHING"
    return f"INSERT INTO accounts (id, {cols}) VALUES {values} ON CONFLICT (id) {update}"


def reserve_tx(
    tx: Tx, ids: Sequence[str], held: Charge, where: Mapping[str, Any], book: LeaseBook | None = None
) -> Reservation | Refusal:
    """Hold ``held`` on every account of ``ids`` (sorted) or, refusing, on none.

    With a lease book, shared accounts are held on this worker's leases of them
    (taken as needed) and only the task's own accounts on their rows.
    """
    direct = list(ids) if book is None else [a for a in ids if not leasable(a)]
    if direct:
        members, params = in_list("a", direct)
        updated = tx.execute(
            f"UPDATE accounts SET {_SET_HOLD} WHERE id IN {members} AND killed = 0 AND {_FITS}",
            {**params, **_charge_params(held)},
        ).rowcount
        if updated != len(direct):
            tx.abort()
            return _why_refused(tx, direct, held)
    leases: tuple[str, ...] = ()
    if book is not None:
        need = (held.picos, held.tokens, held.calls, held.tool_calls)
        taken = take_tx(tx, book, [a for a in ids if leasable(a)], need, where.get("owner"))
        if not isinstance(taken, list):
            return taken  # type: ignore[no-any-return]
        leases = tuple(lease.id for lease in taken)
    tx.execute(_INSERT_RESERVATION, {**where, "accounts": "\n".join(direct), "leases": "\n".join(leases) or None,
                                     **_charge_params(held)})
    if book is None:
        return Reservation(str(where["id"]), tuple(ids), held)
    return Reservation(str(where["id"]), tuple(ids), held, direct=tuple(direct), leases=leases)


def settle_tx(
    tx: Tx, reservation: Reservation, spent: Charge, step: Mapping[str, Any], thresholds: Sequence[float],
    book: LeaseBook | None = None,
) -> list[Alert]:
    """Move a reservation to ``spent`` and write its step row; returns the alerts that fired."""
    gone = tx.execute("DELETE FROM reservations WHERE id = :id", {"id": reservation.id}).rowcount
    if gone != 1:
        # Recovery judged this reservation stale and charged its worst case
        # already; charging again would count the call twice.
        late = "settled after recovery had closed it at its worst case; not charged again"
        insert_step(tx, {**step, "note": late, "cost_picos": 0})
        if book is not None:  # recovery counted its hold on this worker's leases as used: so does memory
            forget_hold(tx, book, reservation.leases, _dims(reservation.held))
        return []
    rows = list(move(tx, reservation.rows, reservation.held, spent)) if reservation.rows else []
    alerts = _alerts(tx, rows, spent, thresholds) if thresholds else []
    if reservation.leases and book is not None:
        held, used = reservation.held, spent
        returned = settle_leases_tx(tx, book, reservation.leases, _dims(held), _dims(used))
        for lease_row, lease_used in returned:
            alerts += _alerts(tx, [lease_row], lease_used, thresholds) if thresholds else []
    insert_step(tx, step)
    return alerts


def _dims(c: Charge) -> tuple[int, int, int, int]:
    return (c.picos, c.tokens, c.calls, c.tool_calls)


class Accounts:
    """The per-call path over the ``accounts`` and ``reservations`` tables, run on the ledger's writer."""

    def __init__(self, sql: SqlRunner, alert_thresholds: Sequence[float] = (0.8,), leases: bool = False) -> None:
        self._sql = sql
        self.leases = LeaseBook() if leases else None  # this worker's leases of shared accounts (see _leases)
        self.owner: str | None = None  # the worker id that reservations made here name (set by the Ledger)
        self.alert_thresholds = tuple(sorted(alert_thresholds))
        self.listeners: list[Callable[[Alert], None]] = []

    def fire(self, alerts: Iterable[Alert]) -> None:
        """Hand alerts to every listener."""
        for alert in alerts:
            for listener in self.listeners:
                listener(alert)

    # -- accounts ------------------------------------------------------------

    def ensure(self, accounts: Mapping[str, Caps | None]) -> None:
        """Create missing accounts; an account given caps gets exactly those caps (config wins)."""
        wanted = dict(accounts)
        self._sql.call(lambda tx: ensure_tx(tx, wanted), locks=list(wanted))

    def raise_cap(self, account_id: str, dimension: str, by: int) -> None:
        """Add ``by`` to an account's cap in ``dimension`` (an approval granting more room)."""
        column = {v: k for k, v in _UNIT.items()}[dimension]
        self._sql.call(lambda tx: tx.execute(
            f"UPDATE accounts SET cap_{column} = cap_{column} + :by WHERE id = :id", {"by": by, "id": account_id}
        ), locks=[account_id])

    def set_killed(self, account_ids: Iterable[str], killed: bool) -> None:
        """Set or clear the kill flag on accounts (creating them if needed)."""
        ids = list(account_ids)
        members, params = in_list("a", ids)

        def work(tx: Tx) -> None:
            ensure_tx(tx, dict.fromkeys(ids))
            tx.execute(f"UPDATE accounts SET killed = :k WHERE id IN {members}", {"k": 1 if killed else 0, **params})

        self._sql.call(work, locks=ids)
        if self.leases is not None:
            self.leases.expire(ids)  # this worker's next call there takes a new lease, which reads the flag

    # -- reserve and settle -----------------------------------------------------

    def _where(self, task_id: str, kind: str, subtask_id: str | None, provider: str | None, model: str | None,
               tier: str | None, ttl_seconds: float) -> dict[str, Any]:
        now = time.time()
        return {
            "id": secrets.token_hex(16), "task_id": task_id, "kind": kind, "subtask_id": subtask_id,
            "provider": provider, "model": model, "tier": tier, "host": HOST, "pid": os.getpid(), "created_at": now,
            "expires_at": now + ttl_seconds, "owner": self.owner,
        }

    def reserve(
        self,
        accounts: Sequence[str],
        held: Charge,
        *,
        task_id: str,
        kind: str,
        subtask_id: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        tier: str | None = None,
        ttl_seconds: float = RESERVATION_TTL_SECONDS,
    ) -> Reservation | Refusal:
        """Hold ``held`` on every account at once, or on none."""
        ids = sorted(set(accounts))  # one lock order for every writer (PostgreSQL row locks)
        where = self._where(task_id, kind, subtask_id, provider, model, tier, ttl_seconds)
        book = self.leases
        self._lease_first(ids, held)
        return self._sql.call(lambda tx: reserve_tx(tx, ids, held, where, book), may_abort=True,
                              locks=self._locks(ids))

    def reserve_later(
        self,
        accounts: Sequence[str],
        held: Charge,
        *,
        task_id: str,
        kind: str,
        subtask_id: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        tier: str | None = None,
        ttl_seconds: float = RESERVATION_TTL_SECONDS,
    ) -> Pending[Reservation | Refusal]:
        """Queue a reservation for a caller that waits for it; resolves once committed (or refused)."""
        ids = sorted(set(accounts))
        where = self._where(task_id, kind, subtask_id, provider, model, tier, ttl_seconds)
        book = self.leases
        self._lease_first(ids, held)
        return self._sql.submit(lambda tx: reserve_tx(tx, ids, held, where, book), may_abort=True,
                                locks=self._locks(ids), awaited=True)

    def _lease_first(self, ids: Sequence[str], held: Charge) -> None:
        """Queue the leases this call will need, each taken in a transaction of its own.

        Taking a lease locks the shared row; inside a group of other units (which hold task rows)
        that would lock out of order and deadlock with another worker's group.
        """
        book = self.leases
        if book is None:
            return
        need = _dims(held)
        for account in ids:
            if leasable(account) and book.find(account, need) is None:
                self._sql.submit(partial(acquire_tx, book=book, account=account, need=need, owner=self.owner),
                                 may_abort=True, alone=True)

    def _locks(self, ids: Sequence[str]) -> list[str]:
        """The account rows a reservation writes: all of them, or with leases only the task's own."""
        return list(ids) if self.leases is None else [a for a in ids if not leasable(a)]

    def settle(self, reservation: Reservation, spent: Charge, step: Mapping[str, Any]) -> None:
        """Move a reservation to ``spent`` and write its step row, in one transaction; then fire alerts."""
        row, thresholds, book = dict(step), self.alert_thresholds, self.leases
        self.fire(self._sql.call(lambda tx: settle_tx(tx, reservation, spent, row, thresholds, book),
                                 locks=reservation.rows))

    def settle_later(self, reservation: Reservation, spent: Charge, step: Mapping[str, Any]) -> Pending[list[Alert]]:
        """Queue a settlement; the future gives the alerts it fired once it is committed."""
        row, thresholds, book = dict(step), self.alert_thresholds, self.leases
        return self._sql.submit(lambda tx: settle_tx(tx, reservation, spent, row, thresholds, book),
                                locks=reservation.rows)

    def return_leases(self, *, due_only: bool = True) -> None:
        """Give back this worker's idle leases (those past their time, or all of them) to their accounts."""
        book = self.leases
        if book is None:
            return
        leases = book.due() if due_only else book.due(now=float("inf"))
        if leases:  # alone: each locks a shared row, which must not wait inside a group (see _lease_first)
            self._sql.call(lambda tx: [return_tx(tx, book, lease) for lease in leases], alone=True)

    # -- recovery -----------------------------------------------------------------

    def recover(self, now: float | None = None) -> list[str]:
        """Close reservations (and tasks) whose owner is gone or whose time ran out, at their worst case.

        The provider may have billed such a call, so its worst case stays counted
        as spent and a step row of status ``unsettled`` says so: spend can be
        over-stated, never under-stated. Returns the ids of the tasks affected.
        """
        from ._liveness import recover_tx

        me, at = self.owner, time.time() if now is None else now
        return self._sql.call(lambda tx: recover_tx(tx, at, me), alone=True)


def _why_refused(tx: Tx, ids: Sequence[str], held: Charge) -> Refusal:
    cols = ", ".join(f"cap_{d}, spent_{d} + reserved_{d}, spent_{d}" for d in DIMENSIONS)
    members, params = in_list("a", ids)
    rows = tx.execute(f"SELECT id, killed, {cols} FROM accounts WHERE id IN {members}", params).fetchall()
    missing = set(ids) - {r[0] for r in rows}
    if missing:
        raise LedgerError(f"budget account(s) {sorted(missing)} do not exist; they must be created before use")
    for row in rows:
        if row[1]:
            return Refusal(row[0], "killed", 0, 0, 0)
    found: list[Refusal] = []
    for row in rows:
        for i, d in enumerate(DIMENSIONS):
            cap, used, spent, need = row[2 + 3 * i], row[3 + 3 * i], row[4 + 3 * i], getattr(held, d)
            if cap is not None and used + need > cap:
                found.append(Refusal(row[0], _UNIT[d], int(cap), int(used), need, int(spent)))
    if found:
        # A cap that cannot fit even when nothing is in flight is the real reason; say that one.
        return next((r for r in found if not r.transient), found[0])
    raise LedgerError(f"reservation on {list(ids)} refused but no cap is exceeded")


def move(tx: Tx, accounts: Sequence[str], held: Charge, spent: Charge) -> Sequence[Any]:
    members, params = in_list("a", accounts)
    params.update({f"held_{d}": getattr(held, d) for d in DIMENSIONS})
    return tx.execute(
        f"UPDATE accounts SET {_SET_SETTLE} WHERE id IN {members} RETURNING id, {_RETURN}",
        {**params, **_charge_params(spent)},
    ).fetchall()


def _alerts(tx: Tx, rows: Sequence[Any], spent: Charge, thresholds: Sequence[float]) -> list[Alert]:
    fired: list[Alert] = []
    for row in rows:
        for i, d in enumerate(DIMENSIONS):
            now_spent, cap = row[1 + 2 * i], row[2 + 2 * i]
            delta = getattr(spent, d)
            if cap is None or cap <= 0 or delta <= 0:
                continue
            before = now_spent - delta
            for threshold in thresholds:
                if before < threshold * cap <= now_spent:
                    inserted = tx.execute(
                        "INSERT INTO alerts (account, dimension, threshold, spent, cap, created_at)"
                        " VALUES (:a, :d, :t, :s, :c, :at) ON CONFLICT DO NOTHING",
                        {"a": row[0], "d": _UNIT[d], "t": threshold, "s": now_spent, "c": cap, "at": time.time()},
                    ).rowcount
                    if inserted == 1:
                        fired.append(Alert(
                            row[0], _UNIT[d], threshold, int(now_spent), int(cap),
                            message=f"{row[0]} has used {threshold:.0%} of its {_UNIT[d]} cap",
                        ))
    return fired


def _charge_params(c: Charge) -> dict[str, int]:
    return {d: getattr(c, d) for d in DIMENSIONS}
