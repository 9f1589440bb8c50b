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
from ._leases import LeaseBook, forget_hold, leasable, take_tx
from ._leases import settle_tx as settle_leases_tx
from ._sql import Tx, in_list
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
