"""Which workers are alive, across hosts: heartbeats, and closing what a dead worker left open.

Every Ledger is a worker with a row in ``workers`` that it refreshes every
third of its expiry. A reservation or a task names its worker as its owner.
When a worker's row has expired (or is gone), any live worker, on any host,
closes its reservations at their worst case (``unsettled``: the provider may
have billed the calls) and ends its open tasks as ``interrupted``; the first
to do so deletes the row, so it happens once. A worker that was only paused
and comes back finds its row gone: its settlements of closed reservations are
written at cost 0 (the worst case is already counted), its interrupted tasks'
accounts are killed so they stop at their next call, and it carries on under
a new worker id.

The host's process table is a faster test on the same host: a reservation of
a process that no longer exists is closed without waiting for its expiry.
Expiry compares wall clocks, so hosts' clocks must agree to well within the
expiry (NTP does that).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ._accounts import HOST
from ._charges import Charge
from ._holds import insert_step, move
from ._leases import close_hold_tx, lease_accounts_tx, recover_leases_tx
from ._sql import Tx, in_list
from ._tables import OPEN_TASKS_SQL, TASK_STATUSES_OPEN
from ._writer import lock_accounts

OPEN_TASKS = f"SELECT id, owner FROM tasks WHERE {OPEN_TASKS_SQL}"  # served by the partial ix_tasks_open
HEARTBEAT_SECONDS = 30.0  # a worker silent this long is taken for dead; it beats every third of it

_SUMS = (
    "SELECT COALESCE(SUM(cost_picos), 0), COALESCE(SUM(baseline_picos), 0), COALESCE(SUM(input_tokens), 0),"
    " COALESCE(SUM(output_tokens), 0),"
    " SUM(CASE WHEN status IN ('ok', 'error', 'unsettled') AND kind NOT IN ('tool', 'cache_hit') THEN 1 ELSE 0 END),"
    " SUM(CASE WHEN cost_picos IS NULL AND status IN ('ok', 'error') THEN 1 ELSE 0 END),"
    " COALESCE(SUM(saved_picos), 0), SUM(CASE WHEN kind = 'cache_hit' THEN 1 ELSE 0 END)"
    " FROM steps WHERE task_id = :id"
)
_TOTALS = ("cost_picos", "baseline_picos", "input_tokens", "output_tokens", "calls", "unpriced_calls",
           "saved_picos", "cache_hits")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_worker_id() -> str:
    """A worker id that names its host and process, for people reading the ledger, and is never reused."""
    return f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def register_tx(tx: Tx, worker: str, now: float, expiry: float) -> None:
    """Write this worker's heartbeat row."""
    tx.execute(
        "INSERT INTO workers (id, host, pid, started_at, beat_at, expires_at) VALUES (:id, :h, :p, :t, :t, :e)",
        {"id": worker, "h": HOST, "p": os.getpid(), "t": now, "e": now + expiry},
    )


def beat_tx(tx: Tx, worker: str, now: float, expiry: float) -> tuple[bool, bool]:
    """Refresh this worker's heartbeat: (whether its row was still there, whether another worker has expired)."""
    alive = tx.execute(
        "UPDATE workers SET beat_at = :t, expires_at = :e WHERE id = :id", {"id": worker, "t": now, "e": now + expiry}
    ).rowcount == 1
    expired = tx.execute("SELECT id FROM workers WHERE expires_at < :t LIMIT 1", {"t": now}).fetchall()
    stale = tx.execute("SELECT id FROM reservations WHERE expires_at < :t LIMIT 1", {"t": now}).fetchall()
    return alive, bool(expired or stale)


def leave_tx(tx: Tx, worker: str) -> None:
    """Remove this worker's heartbeat row (a clean close)."""
    tx.execute("DELETE FROM workers WHERE id = :id", {"id": worker})


def _owner_process(owner: str) -> tuple[str, int] | None:
    """The host and pid an owner id names (``host:pid:token``, or the older ``host:pid``)."""
    parts = owner.split(":")
    if len(parts) in (2, 3) and parts[1].isdigit():
        return parts[0], int(parts[1])
    return None


def _process_died(host: str, pid: int) -> bool:
    return host == HOST and pid != os.getpid() and not pid_alive(pid)


def _why_dead(owner: str, me: str | None, workers: Mapping[str, float], now: float) -> str | None:
    """Why ``owner`` counts as dead now (a sentence), or None while it is alive."""
    if owner == me:
        return None
    process = _owner_process(owner)
    if process is not None and _process_died(*process):
        return f"its process died mid-call (pid {process[1]} on {process[0]}, worker {owner})"
    if owner in workers:
        if workers[owner] < now:
            return f"its worker {owner} stopped its heartbeat (expired {now - workers[owner]:.0f}s ago)"
        return None
    if owner.count(":") == 2:  # a worker id with no row: already declared dead, or closed
        return f"its worker {owner} has no heartbeat (closed or declared dead)"
    return None  # an older ``host:pid`` owner on another host: only the process table could tell


def recover_tx(tx: Tx, now: float, me: str | None) -> list[str]:
    """Close what dead workers left open and what outlived its time limit, in one transaction.

    Runs alone in its transaction (``alone=True``): it locks the accounts it
    will touch first, in the one order every writer uses, then the workers,
    reservations and tasks. Returns the ids of the tasks affected.
    """
    workers = {str(r[0]): float(r[1]) for r in tx.execute("SELECT id, expires_at FROM workers").fetchall()}
    rows = tx.execute(
        "SELECT id, task_id, accounts, picos, tokens, calls, tool_calls, kind, subtask_id, provider,"
        " model, tier, host, pid, expires_at, owner, leases FROM reservations"
    ).fetchall()
    lease_owners = [str(r[0]) for r in tx.execute("SELECT DISTINCT owner FROM leases").fetchall()]
    open_tasks = tx.execute(OPEN_TASKS).fetchall()
    owners = {str(r[15]) if r[15] is not None else f"{r[12]}:{r[13]}" for r in rows}
    owners |= {str(t[1]) for t in open_tasks if t[1]} | set(lease_owners)
    dead = {o: why for o in owners if (why := _why_dead(o, me, workers, now)) is not None}
    stale = [(r, dead.get(_owner(r)) or "it outlived its time limit") for r in rows
             if _owner(r) in dead or r[14] < now]
    orphans = [(str(t[0]), str(t[1])) for t in open_tasks if t[1] and str(t[1]) in dead]
    lock_accounts(tx, [a for r, _ in stale for a in r[2].split("\n") if a]
                  + [a for t, _ in orphans for a in (f"task:{t}", f"task:{t}:retries")]
                  + lease_accounts_tx(tx, [o for o in dead if o in lease_owners]))
    back = _claim(tx, sorted(o for o in dead if o in workers), workers, now)
    tasks: list[str] = []
    for r, why in sorted(stale, key=lambda s: str(s[0][0])):
        if _owner(r) in back and r[14] >= now:
            continue  # its worker beat again just now: it is alive after all
        if tx.execute("DELETE FROM reservations WHERE id = :id", {"id": r[0]}).rowcount != 1:
            continue  # settled meanwhile, or another worker closed it first
        held = Charge(picos=r[3], tokens=r[4], calls=r[5], tool_calls=r[6])
        if r[2]:
            move(tx, r[2].split("\n"), held, held)
        if r[16]:  # held on leases of shared accounts: the worst case counts as used on them
            close_hold_tx(tx, r[16].split("\n"), (held.picos, held.tokens, held.calls, held.tool_calls))
        insert_step(tx, {
            "task_id": r[1], "subtask_id": r[8], "kind": r[7], "status": "unsettled", "provider": r[9],
            "model": r[10], "tier": r[11], "cost_picos": held.picos, "reserved_picos": held.picos,
            "created_at": time.time(),
            "note": f"reservation closed at its worst case because {why}; the provider may have billed the call",
        })
        tasks.append(str(r[1]))
    recover_leases_tx(tx, {o: why for o, why in dead.items() if o in lease_owners and o not in back})
    for task_id, owner in sorted(orphans):
        if owner not in back and _interrupt(tx, task_id, dead[owner], now):
            tasks.append(task_id)
    return sorted(set(tasks))


def _owner(r: Any) -> str:
    return str(r[15]) if r[15] is not None else f"{r[12]}:{r[13]}"


def _claim(tx: Tx, owners: Sequence[str], workers: Mapping[str, float], now: float) -> set[str]:
    """Delete dead workers' rows (so one that was only paused learns it); returns those that beat meanwhile."""
    back: set[str] = set()
    for owner in owners:
        process = _owner_process(owner)
        if process is not None and _process_died(*process):
            tx.execute("DELETE FROM workers WHERE id = :id", {"id": owner})
        elif tx.execute(
            "DELETE FROM workers WHERE id = :id AND expires_at < :t", {"id": owner, "t": now}
        ).rowcount != 1:
            back.add(owner)
    return back


def _interrupt(tx: Tx, task_id: str, why: str, now: float) -> bool:
    """End an orphaned task as ``interrupted`` with totals summed from its rows; kill its own accounts."""
    sums = tx.execute(_SUMS, {"id": task_id}).fetchall()[0]
    values: dict[str, Any] = {c: int(v or 0) for c, v in zip(_TOTALS, sums, strict=True)}
    members, params = in_list("s", TASK_STATUSES_OPEN)
    changed = tx.execute(
        "UPDATE tasks SET status = 'interrupted', success = :success, stop_reason = :why, finished_at = :now, "
        + ", ".join(f"{c} = :{c}" for c in _TOTALS)
        + f" WHERE id = :id AND status IN {members}",
        {**values, **params, "id": task_id, "success": False, "now": now,
         "why": f"the worker running it is gone: {why}; its open calls were closed at their worst case"},
    ).rowcount
    # Should the worker come back (it was only paused), its next call for this task is refused.
    kill, names = in_list("k", [f"task:{task_id}", f"task:{task_id}:retries"])
    tx.execute(f"UPDATE accounts SET killed = 1 WHERE id IN {kill}", names)
    return changed == 1
