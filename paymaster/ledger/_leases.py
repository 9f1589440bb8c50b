"""Budget leases: a worker reserves against a slice of a shared account in memory, not against its row.

Every call of a task holds its worst case on each account of its chain: the
task's own account and the shared ones above it (agent, tenant, tags, their
day and month accounts). Many workers reserving against one tenant's row all
write that row, twice per call. With leases, a worker takes a slice of a shared
account in one write (the slice is added to the account's ``reserved``, so the
live leases of an account never sum past its cap), then holds its calls against
the slice in memory. Only the task's own account, the reservation row and the
worker's own lease row are written per call; the shared row is written again
only when the lease is returned, with what its calls spent.

Sizes adapt: a lease asks for ``LEASE_CALLS`` calls' worth of the hold that
needed it, but never more than ``1 / LEASE_SHARE`` of the room left on the
account, so near the cap leases shrink to a call or two and no worker can sit
on room that others need. A lease is used for new calls only ``LEASE_SECONDS``
after it was taken, then it is returned as soon as its calls in flight have
settled: a kill switch thrown or a cap lowered elsewhere reaches every worker
within that time, because taking a new lease reads both.

A lease row names its worker. When that worker's heartbeat expires, any live
worker closes the lease at its worst case: the account keeps the whole slice
as spent (for a dimension without a cap, what was used plus what was in
flight), and a step row of status ``unsettled`` carries the part that no
settled row covers. A worker that was only paused finds its leases gone and
takes new ones.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ..errors import LedgerError
from ._charges import Charge, Refusal
from ._sql import Tx, in_list

LEASE_CALLS = 32  # a lease covers this many calls' worth of the hold that asked for it
LEASE_SHARE = 4  # ... but never more than this fraction (1/4) of the room left on the account
LEASE_SECONDS = 1.0  # new calls use a lease this long; the bound on how late a kill or a cap change is seen
_DIMS = ("picos", "tokens", "calls", "tool_calls")
_UNIT = {"picos": "usd", "tokens": "tokens", "calls": "steps", "tool_calls": "tool_calls"}
HOLD_SET = ", ".join(f"held_{d} = held_{d} + :{d}" for d in _DIMS)  # a call's hold on its leases
SETTLE_SET = ", ".join(f"held_{d} = held_{d} - :h_{d}, used_{d} = used_{d} + :{d}" for d in _DIMS)


def leasable(account: str) -> bool:
    """Whether an account is shared by tasks (and so leased): every account but a task's own."""
    return not account.startswith("task:")


@dataclass
class Lease:
    """This worker's slice of one shared account, as it stands in memory."""

    id: str
    account: str
    size: tuple[int | None, ...]  # per dimension; None: no cap, nothing held on the account
    expires: float  # time.monotonic() after which it takes no new calls
    unit: tuple[int, ...] = (0, 0, 0, 0)  # the hold it was taken for: once that no longer fits, it is spent
    held: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    used: list[int] = field(default_factory=lambda: [0, 0, 0, 0])

    def fits(self, need: Sequence[int], now: float) -> bool:
        """Whether a new hold of ``need`` fits in what is left of the slice."""
        if now >= self.expires:
            return False
        left = zip(self.size, self.held, self.used, need, strict=True)
        return all(s is None or h + u + n <= s for s, h, u, n in left)

    @property
    def idle(self) -> bool:
        """No call holds anything on it."""
        return not any(self.held)


class LeaseBook:
    """The leases this worker holds, by account; changed only inside ledger transactions."""

    def __init__(self) -> None:
        self._by_account: dict[str, list[Lease]] = {}
        self._lock = threading.Lock()
        self.writes: Counter[str] = Counter()  # writes to each shared account's row: leases taken and returned

    def find(self, account: str, need: Sequence[int]) -> Lease | None:
        """A lease of ``account`` with room for ``need`` now, if this worker has one."""
        now = time.monotonic()
        with self._lock:
            return next((lease for lease in self._by_account.get(account, ()) if lease.fits(need, now)), None)

    def add(self, lease: Lease) -> None:
        """Start using a lease just taken."""
        with self._lock:
            self._by_account.setdefault(lease.account, []).append(lease)

    def drop(self, lease: Lease) -> None:
        """Forget a lease (returned, or closed by another worker)."""
        with self._lock:
            leases = self._by_account.get(lease.account, [])
            if lease in leases:
                leases.remove(lease)
            if not leases:
                self._by_account.pop(lease.account, None)

    def get(self, lease_id: str) -> Lease | None:
        """The lease with this id, if this worker still holds it."""
        with self._lock:
            return next((lease for leases in self._by_account.values() for lease in leases if lease.id == lease_id),
                        None)

    def due(self, now: float | None = None, account: str | None = None) -> list[Lease]:
        """Leases with nothing in flight that are past their time or too spent for another call: to return."""
        at = time.monotonic() if now is None else now
        with self._lock:
            return [lease for name, leases in self._by_account.items() for lease in leases
                    if (account is None or name == account) and lease.idle and not lease.fits(lease.unit, at)]

    def expire(self, accounts: Iterable[str] | None = None) -> None:
        """Take no new calls on these accounts' leases (all, if None): a kill or a cap change here."""
        with self._lock:
            for account, leases in self._by_account.items():
                if accounts is None or account in accounts:
                    for lease in leases:
                        lease.expires = 0.0

    def clear(self) -> None:
        """Forget every lease (the worker was declared dead: its leases were closed by another)."""
        with self._lock:
            self._by_account.clear()


def take_tx(
    tx: Tx, book: LeaseBook, shared: Sequence[str], need: Sequence[int], owner: str | None
) -> list[Lease] | Any:
    """Hold ``need`` on a lease of every shared account (taking leases as needed), or return the Refusal.

    Runs inside the reservation's transaction: the in-memory changes are undone
    if the transaction (or this unit of it) rolls back.
    """
    amounts = dict(zip(_DIMS, need, strict=True))
    for _ in range(3):
        taken: list[Lease] = []
        for account in shared:
            lease = book.find(account, need)
            if lease is None:
                got = _acquire_tx(tx, book, account, need, owner)
                if not isinstance(got, Lease):
                    return got
                lease = got
            taken.append(lease)
        if not taken:
            return taken
        ids, params = in_list("l", [lease.id for lease in taken])
        present = {str(r[0]) for r in tx.execute(
            f"UPDATE leases SET {HOLD_SET} WHERE id IN {ids} RETURNING id", {**params, **amounts}
        ).fetchall()}
        if len(present) == len(taken):
            hold_in_memory(tx, taken, need)
            return taken
        # Another worker closed some (it took this worker for dead while it was paused): undo, forget
        # those, and take new ones.
        back, back_params = in_list("l", sorted(present))
        if back_params:
            unsets = ", ".join(f"held_{d} = held_{d} - :{d}" for d in _DIMS)
            tx.execute(f"UPDATE leases SET {unsets} WHERE id IN {back}", {**back_params, **amounts})
        for lease in taken:
            if lease.id not in present:
                book.drop(lease)
    raise LedgerError("leases of this worker keep being closed by other workers; is its heartbeat too short?")


def held_on(book: LeaseBook, shared: Sequence[str], need: Sequence[int]) -> list[Lease] | None:
    """This worker's leases with room for ``need`` on every shared account; None if one must be taken."""
    found = [book.find(account, need) for account in shared]
    return None if None in found else found  # type: ignore[return-value]


def hold_in_memory(tx: Tx, leases: Sequence[Lease], need: Sequence[int]) -> None:
    """Count a hold written to these leases' rows on them in memory too (undone if its unit rolls back)."""
    for lease in leases:
        _add(lease.held, need)
        tx.on_undo(partial(_add, lease.held, need, -1))


def settle_params(lease_ids: Sequence[str], held: Sequence[int], spent: Sequence[int]) -> tuple[str, dict[str, Any]]:
    """The ``IN`` list and parameters of ``UPDATE leases SET SETTLE_SET WHERE id IN ...`` for one call."""
    ids, params = in_list("l", list(lease_ids))
    return ids, {**params, **{f"h_{d}": h for d, h in zip(_DIMS, held, strict=True)},
                 **dict(zip(_DIMS, spent, strict=True))}


def settle_tx(
    tx: Tx, book: LeaseBook, lease_ids: Sequence[str], held: Sequence[int], spent: Sequence[int]
) -> list[tuple[Any, Any]]:
    """Move a call's hold on its leases to what it spent; return leases that are due and now idle.

    Gives, for each lease returned, the account's row and what the lease spent (for cap alerts).
    """
    ids, params = settle_params(lease_ids, held, spent)
    tx.execute(f"UPDATE leases SET {SETTLE_SET} WHERE id IN {ids}", params)
    return settle_in_memory(tx, book, lease_ids, held, spent)


def settle_in_memory(
    tx: Tx, book: LeaseBook, lease_ids: Sequence[str], held: Sequence[int], spent: Sequence[int]
) -> list[tuple[Any, Any]]:
    """``settle_tx`` once the lease rows are written: the leases in memory, and those due back (SQLite)."""
    returned: list[tuple[Any, Any]] = []
    now = time.monotonic()
    for lease_id in lease_ids:
        lease = book.get(lease_id)
        if lease is None:
            continue
        _add(lease.held, held, -1)
        _add(lease.used, spent)

        def undo(lease: Lease = lease) -> None:
            _add(lease.held, held)
            _add(lease.used, spent, -1)

        tx.on_undo(undo)
        # Past its time, or too spent for another call: back now. On a server that would lock the shared
        # row in the middle of a group of settlements (a deadlock with another worker's group): the
        # worker's sweep or its next lease of the account returns it, in a transaction of its own.
        if tx.sqlite and lease.idle and not lease.fits(lease.unit, now):
            used = Charge(*lease.used)
            returned += [(row, used) for row in return_tx(tx, book, lease)]
    return returned


def return_tx(tx: Tx, book: LeaseBook, lease: Lease) -> list[Any]:
    """Give a lease back: the account drops the slice from ``reserved`` and adds what was used to ``spent``.

    Returns the account's row (id, then spent and cap per dimension) for cap alerts; empty if the
    lease was closed by another worker meanwhile.
    """
    book.drop(lease)
    tx.on_undo(lambda: book.add(lease))
    if tx.execute("DELETE FROM leases WHERE id = :id", {"id": lease.id}).rowcount != 1:
        return []  # closed by recovery at its worst case: the account has it already
    _count(tx, book, lease.account)
    sets = ", ".join(
        f"reserved_{d} = reserved_{d} - :s_{d}, spent_{d} = spent_{d} + :{d}" for d in _DIMS
    )
    values = {f"s_{d}": s or 0 for d, s in zip(_DIMS, lease.size, strict=True)}
    values.update({d: u for d, u in zip(_DIMS, lease.used, strict=True)})
    returning = ", ".join(f"spent_{d}, cap_{d}" for d in _DIMS)
    return list(tx.execute(
        f"UPDATE accounts SET {sets} WHERE id = :a RETURNING id, {returning}", {**values, "a": lease.account}
    ).fetchall())


def acquire_tx(tx: Tx, book: LeaseBook, account: str, need: Sequence[int], owner: str | None) -> Lease | Any:
    """Take a lease of ``account`` for ``need`` unless this worker has one with room (a transaction of its own)."""
    return book.find(account, need) or _acquire_tx(tx, book, account, need, owner)


def _acquire_tx(tx: Tx, book: LeaseBook, account: str, need: Sequence[int], owner: str | None) -> Lease | Any:
    """Take a new lease of ``account`` sized for ``need`` (one write to the account), or the Refusal."""
    for due in book.due(account=account):
        return_tx(tx, book, due)  # what is left of it goes back before a new slice is cut
    cols = ", ".join(f"cap_{d}, spent_{d}, reserved_{d}" for d in _DIMS)
    lock = "" if tx.sqlite else " FOR UPDATE"
    rows = tx.execute(f"SELECT killed, {cols} FROM accounts WHERE id = :a{lock}", {"a": account}).fetchall()
    if not rows:
        raise LedgerError(f"budget account {account!r} does not exist; it must be created before use")
    row = rows[0]
    if row[0]:
        tx.abort()
        return Refusal(account, "killed", 0, 0, 0)
    size: list[int | None] = []
    for i, d in enumerate(_DIMS):
        cap, spent, reserved = row[1 + 3 * i], row[2 + 3 * i], row[3 + 3 * i]
        if cap is None:
            size.append(None)
            continue
        room = cap - spent - reserved
        if need[i] > room:
            tx.abort()
            return Refusal(account, _UNIT[d], int(cap), int(spent + reserved), need[i], int(spent))
        want = LEASE_CALLS * max(need[i], 1 if d in ("calls", "tool_calls") else 0)
        size.append(min(room, max(need[i], min(want, room // LEASE_SHARE))))
    lease = Lease(id=secrets.token_hex(12), account=account, size=tuple(size),
                  expires=time.monotonic() + LEASE_SECONDS, unit=tuple(need))
    sets = ", ".join(f"reserved_{d} = reserved_{d} + :{d}" for d in _DIMS)
    tx.execute(f"UPDATE accounts SET {sets} WHERE id = :a",
               {"a": account, **{d: s or 0 for d, s in zip(_DIMS, size, strict=True)}})
    tx.execute(
        "INSERT INTO leases (id, account, owner, size_picos, size_tokens, size_calls, size_tool_calls, created_at)"
        " VALUES (:id, :a, :o, :picos, :tokens, :calls, :tool_calls, :t)",
        {"id": lease.id, "a": account, "o": owner or "", "t": time.time(),
         **dict(zip(_DIMS, size, strict=True))},
    )
    book.add(lease)
    tx.on_undo(lambda: book.drop(lease))
    _count(tx, book, lease.account)
    return lease


def _count(tx: Tx, book: LeaseBook, account: str) -> None:
    book.writes[account] += 1
    tx.on_undo(lambda: book.writes.subtract([account]))


def recover_leases_tx(tx: Tx, dead: Mapping[str, str]) -> list[str]:
    """Close the leases of dead workers at their worst case; returns the accounts changed.

    The account keeps the whole slice as spent (for a dimension without a cap:
    what was used plus what was in flight), and a step row of status
    ``unsettled`` carries the money no settled row covers.
    """
    from ._holds import insert_step  # the holds module imports this one

    if not dead:
        return []
    members, params = in_list("o", sorted(dead))
    cols = ", ".join(f"size_{d}" for d in _DIMS) + ", " + ", ".join(f"held_{d}" for d in _DIMS) + ", " + ", ".join(
        f"used_{d}" for d in _DIMS)
    found = tx.execute(f"SELECT id FROM leases WHERE owner IN {members} ORDER BY id", params).fetchall()
    changed: list[str] = []
    for (lease_id,) in found:
        # The figures as the row stands when it is deleted: a worker taken for dead may still be holding
        # on it, and the delete waits for that (the row read above would miss it).
        gone = tx.execute(f"DELETE FROM leases WHERE id = :id RETURNING id, account, owner, {cols}",
                          {"id": lease_id}).fetchall()
        if not gone:
            continue  # another worker closed it first
        r = gone[0]
        size, held, used = r[3:7], r[7:11], r[11:15]
        charge = [int(s) if s is not None else int(h) + int(u) for s, h, u in zip(size, held, used, strict=True)]
        values = {f"s_{d}": int(s or 0) for d, s in zip(_DIMS, size, strict=True)}
        values.update({d: c for d, c in zip(_DIMS, charge, strict=True)})
        sets = ", ".join(f"reserved_{d} = reserved_{d} - :s_{d}, spent_{d} = spent_{d} + :{d}" for d in _DIMS)
        tx.execute(f"UPDATE accounts SET {sets} WHERE id = :a", {**values, "a": r[1]})
        unsettled = charge[0] - int(used[0])  # money no settled row of this lease covers
        if unsettled > 0:
            insert_step(tx, {
                "task_id": f"lease:{r[0]}", "kind": "lease", "status": "unsettled", "provider": "lease",
                "model": r[1], "cost_picos": unsettled, "reserved_picos": unsettled, "created_at": time.time(),
                "note": f"lease of {r[1]} closed at its worst case because {dead[str(r[2])]}",
            })
        changed.append(str(r[1]))
    return changed


def forget_hold(tx: Tx, book: LeaseBook, lease_ids: Sequence[str], held: Sequence[int]) -> None:
    """In memory only: a hold that recovery closed (at its worst case) now counts as used on its leases."""
    for lease_id in lease_ids:
        lease = book.get(lease_id)
        if lease is not None:
            _add(lease.held, held, -1)
            _add(lease.used, held)
            tx.on_undo(partial(_add, lease.held, held))
            tx.on_undo(partial(_add, lease.used, held, -1))


def close_hold_tx(tx: Tx, lease_ids: Sequence[str], held: Sequence[int]) -> None:
    """A reservation closed at its worst case: its hold on these leases counts as used."""
    ids, params = in_list("l", list(lease_ids))
    sets = ", ".join(f"held_{d} = held_{d} - :{d}, used_{d} = used_{d} + :{d}" for d in _DIMS)
    tx.execute(f"UPDATE leases SET {sets} WHERE id IN {ids}", {**params, **dict(zip(_DIMS, held, strict=True))})


def lease_accounts_tx(tx: Tx, owners: Iterable[str]) -> list[str]:
    """The accounts that these workers' leases are on (to lock them first)."""
    members, params = in_list("o", sorted(set(owners)))
    if not params:
        return []
    return [str(r[0]) for r in tx.execute(f"SELECT DISTINCT account FROM leases WHERE owner IN {members}",
                                          params).fetchall()]


def _add(into: list[int], amount: Sequence[int], sign: int = 1) -> None:
    for i, a in enumerate(amount):
        into[i] += sign * a
