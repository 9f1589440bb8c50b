"""Holds in SQL: the transactions that reserve on, settle and create budget accounts.

Reserving is one conditional UPDATE over every account of the chain inside one
write transaction: if any row refuses, nothing is held, and the refusal names
the account and cap that did not fit. Settling moves the hold to ``spent`` in
the same transaction that writes the step row, so there is never a paid call
without its row, nor a row without its charge; it returns the cap alerts that
fired. Each function runs inside a transaction it is given (see ``Accounts``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from pydantic_core import PydanticUndefined

from ..errors import LedgerError
from ._charges import _UNIT, DIMENSIONS, Alert, Caps, Charge, Refusal, Reservation
from ._leases import (
    HOLD_SET,
    SETTLE_SET,
    Lease,
    LeaseBook,
    forget_hold,
    held_on,
    hold_in_memory,
    leasable,
    settle_in_memory,
    settle_params,
    take_tx,
)
from ._leases import settle_tx as settle_leases_tx
from ._sql import RunAgain, Tx, in_list, in_members
from ._tables import StepRecord

_SET_HOLD = ", ".join(f"reserved_{d} = reserved_{d} + :{d}" for d in DIMENSIONS)
_FITS = " AND ".join(f"(cap_{d} IS NULL OR spent_{d} + reserved_{d} + :{d} <= cap_{d})" for d in DIMENSIONS)
_SET_SETTLE = ", ".join(
    f"reserved_{d} = reserved_{d} - :held_{d}, spent_{d} = spent_{d} + :{d}" for d in DIMENSIONS
)
_RETURN = ", ".join(f"spent_{d}, cap_{d}" for d in DIMENSIONS)
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


def insert_step(tx: Tx, step: Mapping[str, Any]) -> None:
    """Write one step row (every column, defaults filled in)."""
    tx.execute(_INSERT_STEP, {**_STEP_DEFAULTS, **step})


def ensure_tx(tx: Tx, accounts: Mapping[str, Caps | None]) -> None:
    """Create missing accounts; an account given caps gets exactly those caps (config wins)."""
    tx.execute_together(ensure_statements(accounts))


def ensure_statements(accounts: Mapping[str, Caps | None]) -> list[tuple[str, dict[str, Any]]]:
    """The statements of ``ensure_tx`` (to run with others; their parameters are named ``id<n>``, ``c<n>_...``)."""
    statements: list[tuple[str, dict[str, Any]]] = []
    start = 0  # the two statements' parameters are numbered on from one to the next: run together, they differ
    for capped in (True, False):  # one statement for those that set caps, one for those that keep theirs
        rows = sorted((a, c) for a, c in accounts.items() if (c is not None) == capped)  # sorted: no crossing
        if rows:
            params: dict[str, Any] = {}
            for i, (account_id, caps) in enumerate(rows, start):
                c = caps or _NO_CAPS
                params.update({f"id{i}": account_id, f"c{i}_picos": c.picos, f"c{i}_tokens": c.tokens,
                               f"c{i}_calls": c.calls, f"c{i}_tool_calls": c.tool_calls})
            statements.append((_upsert_accounts(start, len(rows), capped), params))
            start += len(rows)
    return statements


_NO_CAPS = Caps()


@lru_cache(maxsize=64)
def _upsert_accounts(start: int, n: int, capped: bool) -> str:
    cols = ", ".join(f"cap_{d}" for d in DIMENSIONS)
    values = ", ".join("(:id{i}, {caps})".format(i=i, caps=", ".join(f":c{i}_{d}" for d in DIMENSIONS))
                       for i in range(start, start + n))
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
    if tx.fast:
        found = [] if book is None else held_on(book, [a for a in ids if leasable(a)], _dims(held))
        if found is not None:  # no lease to take first: one statement
            return _reserve_at_once(tx, ids, direct, found, held, where, book is not None)
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
    return _reservation(where, ids, held, direct, leases, book is not None)


def _reservation(
    where: Mapping[str, Any], ids: Sequence[str], held: Charge, direct: Sequence[str], leases: Sequence[str],
    leased: bool,
) -> Reservation:
    if not leased:
        return Reservation(str(where["id"]), tuple(ids), held)
    return Reservation(str(where["id"]), tuple(ids), held, direct=tuple(direct), leases=tuple(leases))


def settle_tx(
    tx: Tx, reservation: Reservation, spent: Charge, step: Mapping[str, Any], thresholds: Sequence[float],
    book: LeaseBook | None = None,
) -> list[Alert]:
    """Move a reservation to ``spent`` and write its step row; returns the alerts that fired."""
    if tx.fast:
        return _settle_at_once(tx, reservation, spent, step, thresholds, book)
    gone = tx.execute("DELETE FROM reservations WHERE id = :id", {"id": reservation.id}).rowcount
    if gone != 1:
        # Recovery judged this reservation stale and charged its worst case
        # already; charging again would count the call twice.
        insert_step(tx, {**step, "note": _LATE, "cost_picos": 0})
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


# -- on a server, one statement each (data-modifying WITH): a round trip per unit, not three or four -----------

_LATE = "settled after recovery had closed it at its worst case; not charged again"


def _reserve_at_once(
    tx: Tx, ids: Sequence[str], direct: Sequence[str], leases: Sequence[Lease], held: Charge,
    where: Mapping[str, Any], leased: bool,
) -> Reservation:
    """``reserve_tx`` in one statement; RunAgain when a row refuses or a lease is gone (the slow path says why)."""
    params = in_list("a", direct)[1]
    lease_ids = [lease.id for lease in leases]
    lease_params = in_list("l", lease_ids)[1]
    counts = tx.execute(_reserve_sql(len(direct), len(leases)), {
        **params, **lease_params, **where, "accounts": "\n".join(direct), "leases": "\n".join(lease_ids) or None,
        **_charge_params(held),
    }).fetchall()[0]
    if counts[0] != len(direct) or counts[1] != len(leases):
        raise RunAgain
    hold_in_memory(tx, leases, _dims(held))
    return _reservation(where, ids, held, direct, lease_ids, leased)


@lru_cache(maxsize=64)
def _reserve_sql(direct: int, leases: int) -> str:
    parts = [f"r AS ({_INSERT_RESERVATION})"]
    counts = []
    if direct:
        members = in_members("a", direct)
        parts.append(f"a AS (UPDATE accounts SET {_SET_HOLD} WHERE id IN {members} AND killed = 0 AND {_FITS}"
                     " RETURNING 1)")
    counts.append("(SELECT count(*) FROM a)" if direct else "0")
    if leases:
        members = in_members("l", leases)
        parts.append(f"l AS (UPDATE leases SET {HOLD_SET} WHERE id IN {members} RETURNING 1)")
    counts.append("(SELECT count(*) FROM l)" if leases else "0")
    return f"WITH {', '.join(parts)} SELECT {', '.join(counts)}"


def _settle_at_once(
    tx: Tx, reservation: Reservation, spent: Charge, step: Mapping[str, Any], thresholds: Sequence[float],
    book: LeaseBook | None,
) -> list[Alert]:
    """``settle_tx`` in one statement: the reservation's delete, the accounts, the leases and the step row."""
    params = in_list("a", reservation.rows)[1]
    params.update({f"held_{d}": getattr(reservation.held, d) for d in DIMENSIONS})
    lease_ids = reservation.leases if book is not None else ()
    _, lease_params = settle_params(lease_ids, _dims(reservation.held), _dims(spent))
    result = tx.execute(_settle_sql(len(reservation.rows), len(lease_ids)), {
        **_STEP_DEFAULTS, **step, **params, **lease_params, **_charge_params(spent), "rid": reservation.id,
    }).fetchall()
    gone, step_id = result[0][0], result[0][1]
    if gone != 1:
        # Recovery closed it at its worst case already (nothing above moved: each part waits on the delete).
        tx.execute("UPDATE steps SET note = :note, cost_picos = 0 WHERE id = :id", {"note": _LATE, "id": step_id})
        if book is not None:
            forget_hold(tx, book, reservation.leases, _dims(reservation.held))
        return []
    rows = [r[2:] for r in result if r[2] is not None]
    alerts = _alerts(tx, rows, spent, thresholds) if thresholds else []
    if lease_ids and book is not None:
        settle_in_memory(tx, book, lease_ids, _dims(reservation.held), _dims(spent))  # nothing returns on a server
    return alerts


@lru_cache(maxsize=64)
def _settle_sql(rows: int, leases: int) -> str:
    parts = ["d AS (DELETE FROM reservations WHERE id = :rid RETURNING 1)", f"s AS ({_INSERT_STEP} RETURNING id)"]
    moved = "(SELECT NULL AS id)"
    if rows:
        members = in_members("a", rows)
        parts.append(f"a AS (UPDATE accounts SET {_SET_SETTLE} WHERE id IN {members}"
                     f" AND EXISTS (SELECT 1 FROM d) RETURNING id, {_RETURN})")
        moved = "a"
    if leases:
        members = in_members("l", leases)
        parts.append(f"l AS (UPDATE leases SET {SETTLE_SET} WHERE id IN {members} AND EXISTS (SELECT 1 FROM d))")
    return (f"WITH {', '.join(parts)} SELECT (SELECT count(*) FROM d), (SELECT id FROM s), m.*"
            f" FROM (SELECT 1) AS one LEFT JOIN {moved} AS m ON TRUE")


def _dims(c: Charge) -> tuple[int, int, int, int]:
    return (c.picos, c.tokens, c.calls, c.tool_calls)


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
