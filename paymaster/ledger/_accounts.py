"""Budget accounts: atomic reservations across a chain of accounts, settlement, alerts, kills, recovery.

An account row holds caps, ``spent`` and ``reserved`` for four dimensions
(pico-dollars, tokens, model calls, tool calls). ``Accounts`` runs the
per-call path on the ledger's writer: it names each reservation (host,
process, worker, expiry), takes the leases a call needs, and hands the
transactions of ``_holds`` (reserve, settle, create) to the writer. The value
types live in ``_charges`` and are re-exported here.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from ._charges import _UNIT
from ._charges import Alert as Alert
from ._charges import Caps as Caps
from ._charges import Charge as Charge
from ._charges import Refusal as Refusal
from ._charges import Reservation as Reservation
from ._holds import _dims, reserve_tx, settle_tx
from ._holds import ensure_statements as ensure_statements
from ._holds import ensure_tx as ensure_tx
from ._holds import insert_step as insert_step
from ._leases import LeaseBook, acquire_tx, leasable, return_tx
from ._pending import Pending
from ._sql import SqlRunner, Tx, in_list
from ._writer import lock_accounts

RESERVATION_TTL_SECONDS = 15 * 60
HOST = socket.gethostname()


def shared_locks(accounts: Iterable[str]) -> list[str]:
    """Of the accounts a unit writes, those its group locks first (PostgreSQL): the shared ones.

    A task's own account is written by its worker alone (and by a worker recovering it once its
    owner is taken for dead): locking it up front would cost a round trip per group for no
    order that matters. Should that recovery and a worker that was only paused cross, the
    server breaks the deadlock and the group runs again.
    """
    return [a for a in accounts if leasable(a)]


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
        """Hold ``held`` on every account at once, or on none (blocks this thread until it is committed)."""
        return self.reserve_later(accounts, held, task_id=task_id, kind=kind, subtask_id=subtask_id,
                                  provider=provider, model=model, tier=tier, ttl_seconds=ttl_seconds).result()

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
        ids = sorted(set(accounts))  # one lock order for every writer (PostgreSQL row locks)
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
        """The shared rows a reservation writes, to lock first: none with leases (see ``shared_locks``)."""
        return [] if self.leases is not None else shared_locks(ids)

    def settle(self, reservation: Reservation, spent: Charge, step: Mapping[str, Any]) -> None:
        """Move a reservation to ``spent`` and write its step row, in one transaction; then fire alerts."""
        row, thresholds, book = dict(step), self.alert_thresholds, self.leases
        self.fire(self._sql.call(lambda tx: settle_tx(tx, reservation, spent, row, thresholds, book),
                                 locks=shared_locks(reservation.rows)))

    def settle_later(self, reservation: Reservation, spent: Charge, step: Mapping[str, Any]) -> Pending[list[Alert]]:
        """Queue a settlement; the future gives the alerts it fired once it is committed."""
        row, thresholds, book = dict(step), self.alert_thresholds, self.leases
        return self._sql.submit(lambda tx: settle_tx(tx, reservation, spent, row, thresholds, book),
                                locks=shared_locks(reservation.rows))

    def return_leases(self, *, due_only: bool = True) -> None:
        """Give back this worker's idle leases (those past their time, or all of them) to their accounts."""
        book = self.leases
        if book is None:
            return
        now = None if due_only else float("inf")

        def work(tx: Tx) -> None:
            # Which are due is decided again here, on the writer: a call queued before this one may have
            # put a hold on a lease that looked idle (too spent for its first call, not for a smaller one).
            due = book.due(now)
            # Their accounts are locked first, in the order every writer uses: two workers each returning
            # leases of the same accounts in their own order would deadlock (and wait a second for the server
            # to say so).
            lock_accounts(tx, [lease.account for lease in due])
            for lease in due:
                return_tx(tx, book, lease)

        if book.due(now):  # alone: each locks a shared row, which must not wait inside a group (see _lease_first)
            self._sql.call(work, alone=True)

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
