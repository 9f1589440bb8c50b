"""Budget leases: calls hold their worst case on a worker's slice of a shared account, not on its row."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlmodel import select

from paymaster import Agent, Budget, Limit, Runtime, ScriptedProvider, TaskStatus, Usage
from paymaster._money import to_picos
from paymaster.errors import ConfigurationError
from paymaster.ledger import AccountRecord, Caps, Charge, Ledger, Refusal, Reservation
from paymaster.ledger._leases import LEASE_SECONDS, recover_leases_tx

pytestmark = pytest.mark.ledgers  # every test runs on a SQLite file and on PostgreSQL

USAGE = Usage(input_tokens=200, output_tokens=50)


class Job(Agent):
    name = "job"


def _run_many(rt: Runtime, n: int) -> list[TaskStatus]:
    async def main() -> list[TaskStatus]:
        done: list[TaskStatus] = []

        async def one(i: int) -> None:
            done.append((await rt.run(Job, f"job {i}", tenant="acme")).status)

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
        return done

    return anyio.run(main)


def _account_and_steps(url: str) -> tuple[int, int, int, int, int]:
    db = Ledger(url)
    try:
        with db.session() as s:
            day = next(a for a in s.exec(select(AccountRecord)).all() if a.id.startswith("tenant:acme:day:"))
        spent = db.sql.call(lambda tx: tx.execute("SELECT COALESCE(SUM(cost_picos), 0) FROM steps").fetchall())[0][0]
        hold = db.sql.call(lambda tx: tx.execute("SELECT MAX(reserved_picos) FROM steps").fetchall())[0][0]
        leases = db.sql.call(lambda tx: tx.execute("SELECT COUNT(*) FROM leases").fetchall())[0][0]
        return day.spent_picos, day.reserved_picos, int(spent), int(leases), int(hold or 0)
    finally:
        db.close()


def test_a_roomy_shared_account_is_written_once_per_many_calls(ledger_path: Path) -> None:
    url = str(ledger_path)
    limits = [Limit("tenant:acme", day=Budget(usd="100"))]
    with Runtime(ledger=url, provider=ScriptedProvider(usage=USAGE), limits=limits, leases=True) as rt:
        statuses = _run_many(rt, 300)
        book = rt.ledger.accounts.leases
        assert book is not None
        writes = dict(book.writes)
    assert statuses.count(TaskStatus.SUCCEEDED) == 300
    spent, reserved, steps, leases, _ = _account_and_steps(url)
    # Each shared account of the chain (agent, tenant, the tenant's day) is written when a lease of it is
    # taken or returned: well under once per ten calls.
    assert len(writes) == 3 and all(0 < n / 300 <= 0.1 for n in writes.values()), writes
    # Closing returned every lease: the account holds nothing and has spent exactly what the rows say.
    assert (reserved, leases) == (0, 0) and spent == steps > 0


def test_near_the_cap_leases_shrink_and_spend_stops_within_one_call_of_it(ledger_path: Path) -> None:
    url = str(ledger_path)
    cap = Decimal("0.02")
    limits = [Limit("tenant:acme", day=Budget(usd=str(cap)))]
    with Runtime(ledger=url, provider=ScriptedProvider(usage=USAGE), limits=limits, leases=True,
                 budget_wait=15) as rt:  # generous: a loaded machine is slow, not wrong
        statuses = _run_many(rt, 150)
    spent, reserved, steps, leases, hold = _account_and_steps(url)
    assert spent == steps <= to_picos(cap) and (reserved, leases) == (0, 0)
    assert TaskStatus.SUCCEEDED in statuses and TaskStatus.BUDGET_EXCEEDED in statuses
    # Stopped only because the next call's worst case no longer fits: what is left is less than one hold.
    assert 0 <= to_picos(cap) - spent < hold


def test_a_kill_switch_thrown_by_another_worker_reaches_a_leasing_worker_within_the_lease_time(
    ledger_path: Path,
) -> None:
    url = str(ledger_path)
    limits = [Limit("tenant:acme", day=Budget(usd="100"))]
    with Runtime(ledger=url, provider=ScriptedProvider(usage=USAGE), limits=limits, leases=True) as worker, \
            Runtime(ledger=url, provider=ScriptedProvider(usage=USAGE), limits=limits) as other:
        assert worker.run_sync(Job, "before", tenant="acme").status is TaskStatus.SUCCEEDED
        other.kill(tenant="acme")  # another worker: this one's leases know nothing of it yet
        time.sleep(LEASE_SECONDS + 0.2)
        after = worker.run_sync(Job, "after", tenant="acme")
    assert after.status is TaskStatus.KILLED and after.calls == 0


def test_leases_need_a_ledger_opened_with_them(ledger_path: Path) -> None:
    ledger = Ledger(str(ledger_path))
    try:
        with pytest.raises(ConfigurationError, match="leases=True"):
            Runtime(ledger=ledger, provider=ScriptedProvider(), leases=True)
    finally:
        ledger.close()


def test_a_runtime_sets_its_ledgers_heartbeat_or_says_where_it_belongs(ledger_path: Path) -> None:
    with Runtime(ledger=str(ledger_path), provider=ScriptedProvider(), heartbeat_seconds=4.5) as rt:
        assert rt.ledger.heartbeat_seconds == 4.5
    ledger = Ledger(str(ledger_path))
    try:
        with pytest.raises(ConfigurationError, match="Ledger\\(url, heartbeat_seconds"):
            Runtime(ledger=ledger, provider=ScriptedProvider(), heartbeat_seconds=4.5)
    finally:
        ledger.close()


def test_a_cap_lowered_in_this_worker_is_not_passed_on_a_slice_cut_under_the_old_one(ledger_path: Path) -> None:
    url = str(ledger_path)
    ledger = Ledger(url, leases=True)
    try:
        roomy = [Limit("tenant:acme", day=Budget(usd="100"))]
        with Runtime(ledger=ledger, provider=ScriptedProvider(usage=USAGE), limits=roomy) as before:
            assert before.run_sync(Job, "first", tenant="acme").status is TaskStatus.SUCCEEDED  # a big slice
        tight = [Limit("tenant:acme", day=Budget(usd="0.02"))]
        with Runtime(ledger=ledger, provider=ScriptedProvider(usage=USAGE), limits=tight, budget_wait=15) as after:
            _run_many(after, 100)
    finally:
        ledger.close()
    spent, reserved, steps, leases, _ = _account_and_steps(url)
    assert spent == steps <= to_picos(Decimal("0.02")) and (reserved, leases) == (0, 0)


def test_a_worker_whose_leases_another_closed_takes_new_ones_and_every_call_is_counted(ledger_path: Path) -> None:
    url = str(ledger_path)
    limits = [Limit("tenant:acme", day=Budget(usd="100"))]
    with Runtime(ledger=url, provider=ScriptedProvider(usage=USAGE), limits=limits, leases=True) as worker:
        assert worker.run_sync(Job, "before", tenant="acme").status is TaskStatus.SUCCEEDED
        other = Ledger(url)
        try:  # as a live worker does once this one's heartbeat has expired (it was paused, say)
            closed = other.sql.call(lambda tx: recover_leases_tx(tx, {worker.ledger.worker_id: "a test closed it"}))
        finally:
            other.close()
        assert closed  # its leases were open, and still look usable to it
        after = worker.run_sync(Job, "after", tenant="acme")
    assert after.status is TaskStatus.SUCCEEDED
    spent, reserved, steps, leases, _ = _account_and_steps(url)
    # The closed slices count whole (a step row carries what no settled call covers); the call after it
    # is held and charged on a new lease, not on the row that was gone.
    assert (reserved, leases) == (0, 0) and spent == steps
    assert spent > to_picos(after.cost_usd or Decimal(0)) > 0


def test_a_lease_that_looked_due_is_not_returned_while_a_call_queued_before_holds_on_it(ledger_path: Path) -> None:
    url = str(ledger_path)
    db = Ledger(url, leases=True)
    db._stopping.set()  # no heartbeat sweep: the test decides when idle leases are returned
    db._beats.join()
    accounts, book = db.accounts, db.accounts.leases
    assert book is not None
    gate, running = threading.Event(), threading.Event()
    try:
        accounts.ensure({"tenant:t": Caps(picos=4_000), "task:a": None})
        chain = ["tenant:t", "task:a"]
        # A lease cut for a call of 1,000 (a quarter of the room: 1,000); that call spends 600, so the
        # lease is too spent for another call its size (due back), yet a call of 100 still fits on it.
        first = accounts.reserve(chain, Charge(picos=1_000), task_id="a", kind="execute")
        assert isinstance(first, Reservation)
        accounts.settle(first, Charge(picos=600), _step(600, 1_000))
        db.sql.submit(lambda tx: running.set() or gate.wait(30))  # the writer is busy for now
        assert running.wait(30)
        small = accounts.reserve_later(chain, Charge(picos=100), task_id="a", kind="execute")  # queued first
        sweep = threading.Thread(target=accounts.return_leases)  # as the heartbeat thread does each tick
        sweep.start()
        deadline = time.monotonic() + 30
        while len(db.sql.writer._queue) < 2 and time.monotonic() < deadline:  # the sweep is queued after it
            time.sleep(0.01)
        gate.set()
        second = small.result()
        sweep.join(30)
        assert isinstance(second, Reservation)
        accounts.settle(second, Charge(picos=100), _step(100, 100))
    finally:
        gate.set()
        db.close()  # every lease goes back
    spent, reserved, leases = _account(url, "tenant:t")
    # Both calls are on the shared account: the lease went back only once nothing held on it.
    assert (spent, reserved, leases) == (700, 0, 0)


def _step(cost: int, held: int) -> dict[str, object]:
    return {"task_id": "a", "kind": "execute", "cost_picos": cost, "reserved_picos": held, "created_at": time.time()}


def _account(url: str, account: str) -> tuple[int, int, int]:
    db = Ledger(url)
    try:
        row = db.account(account)
        leases = db.sql.call(lambda tx: tx.execute("SELECT COUNT(*) FROM leases").fetchall())[0][0]
    finally:
        db.close()
    assert row is not None
    return row.spent_picos, row.reserved_picos, int(leases)


def _lease_row(db: Ledger, lease_id: str) -> tuple[int, int]:
    rows = db.sql.call(lambda tx: tx.execute("SELECT held_picos, used_picos FROM leases WHERE id = :id",
                                             {"id": lease_id}).fetchall())
    return int(rows[0][0]), int(rows[0][1])


def test_a_call_refused_in_the_same_commit_as_held_ones_leaves_each_lease_as_its_row_says(ledger_path: Path) -> None:
    url = str(ledger_path)
    db = Ledger(url, leases=True)
    db._stopping.set()  # no heartbeat sweep: the lease stays out while the test reads it
    db._beats.join()
    accounts, book = db.accounts, db.accounts.leases
    assert book is not None
    gate, running = threading.Event(), threading.Event()
    try:
        accounts.ensure({"tenant:t": Caps(picos=1_000_000), "task:a": None, "task:b": Caps(picos=10)})
        first = accounts.reserve(["tenant:t", "task:a"], Charge(picos=100), task_id="a", kind="execute")
        assert isinstance(first, Reservation)
        (lease_id,) = first.leases
        db.sql.submit(lambda tx: running.set() or gate.wait(30))  # the next three share one commit
        assert running.wait(30)
        queued = [accounts.reserve_later(["tenant:t", task], Charge(picos=100), task_id=task[-1:], kind="execute")
                  for task in ("task:a", "task:b", "task:a")]
        gate.set()
        held, refused, held_too = (p.result() for p in queued)
        # On PostgreSQL the refusal runs the commit again, with a savepoint per call: the holds taken
        # on the lease in memory by the first try are undone with its rows.
        assert isinstance(refused, Refusal) and refused.account == "task:b"
        assert isinstance(held, Reservation) and isinstance(held_too, Reservation)
        lease = book.get(lease_id)
        assert lease is not None and _lease_row(db, lease_id) == (lease.held[0], lease.used[0]) == (300, 0)
        for reservation, cost in ((first, 50), (held, 60), (held_too, 70)):
            accounts.settle(reservation, Charge(picos=cost), _step(cost, 100))
        assert _lease_row(db, lease_id) == (lease.held[0], lease.used[0]) == (0, 180)
    finally:
        gate.set()
        db.close()
    assert _account(url, "tenant:t") == (180, 0, 0)


def test_a_call_settled_after_its_hold_ran_out_of_time_is_counted_once_on_its_lease(ledger_path: Path) -> None:
    url = str(ledger_path)
    db = Ledger(url, leases=True)
    db._stopping.set()
    db._beats.join()
    accounts, book = db.accounts, db.accounts.leases
    assert book is not None
    try:
        accounts.ensure({"tenant:t": Caps(picos=1_000_000), "task:a": None})
        chain = ["tenant:t", "task:a"]
        late = accounts.reserve(chain, Charge(picos=100), task_id="a", kind="execute", ttl_seconds=0.01)
        other = accounts.reserve(chain, Charge(picos=100), task_id="a", kind="execute")
        assert isinstance(late, Reservation) and isinstance(other, Reservation)
        time.sleep(0.05)
        assert accounts.recover() == ["a"]  # closed at its worst case (100) while the call was still out
        accounts.settle(late, Charge(picos=40), _step(40, 100))  # written at cost 0: its 100 is counted
        accounts.settle(other, Charge(picos=30), _step(30, 100))
        (lease_id,) = late.leases
        lease = book.get(lease_id)
        assert lease is not None and _lease_row(db, lease_id) == (lease.held[0], lease.used[0]) == (0, 130)
        steps = db.sql.call(lambda tx: tx.execute("SELECT COALESCE(SUM(cost_picos), 0) FROM steps").fetchall())
    finally:
        db.close()
    assert int(steps[0][0]) == 130 and _account(url, "tenant:t") == (130, 0, 0)
    assert _account(url, "task:a") == (130, 0, 0)


def test_two_workers_returning_leases_of_the_same_accounts_in_opposite_orders_do_not_deadlock(
    ledger_path: Path,
) -> None:
    if not str(ledger_path).startswith("postgresql"):
        pytest.skip("row locks: SQLite has one writer at a time")
    url = str(ledger_path)
    workers = [Ledger(url, leases=True) for _ in range(2)]
    blocker, watcher = Ledger(url), Ledger(url)  # the watcher reads while the blocker's writer is busy
    try:
        for db in workers:
            db._stopping.set()  # no heartbeat sweep: the test returns the leases
            db._beats.join()
        workers[0].accounts.ensure({"shared:a": Caps(picos=10**9), "shared:b": Caps(picos=10**9),
                                    "task:x": None, "task:y": None})
        # Each worker takes its leases in the opposite order, so it holds them in that order.
        orders = (("x", ("shared:a", "shared:b")), ("y", ("shared:b", "shared:a")))
        for db, (task, order) in zip(workers, orders, strict=True):
            for account in order:
                held = db.accounts.reserve([account, f"task:{task}"], Charge(picos=10), task_id=task, kind="execute")
                assert isinstance(held, Reservation)
                db.accounts.settle(held, Charge(picos=10), {"task_id": task, "kind": "execute", "cost_picos": 10,
                                                            "reserved_picos": 10, "created_at": time.time()})
        deadlocks = _server_deadlocks(watcher)
        # Another transaction holds both rows, so both workers' returns start and wait at once; when it
        # ends, a worker that locked in its own order would hold one row and want the other's.
        release = threading.Event()
        holding = threading.Event()

        def hold_both(tx: Any) -> None:
            tx.execute("SELECT id FROM accounts WHERE id IN ('shared:a', 'shared:b') FOR UPDATE")
            holding.set()
            release.wait(30)

        holder = threading.Thread(target=blocker.sql.call, args=(hold_both,), kwargs={"alone": True})
        holder.start()
        assert holding.wait(30)
        returns = [threading.Thread(target=db.accounts.return_leases, kwargs={"due_only": False}) for db in workers]
        for thread in returns:
            thread.start()
        deadline = time.monotonic() + 30
        while _waiting_backends(watcher) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        release.set()
        holder.join(30)
        for thread in returns:
            thread.join(30)
    finally:
        for db in workers:
            db.close()
        release.set()
    time.sleep(1.5)  # the server counts a deadlock when the backend that broke it reports its statistics
    try:
        assert _server_deadlocks(watcher) == deadlocks
    finally:
        blocker.close()
        watcher.close()
    spent, reserved, leases = _account(url, "shared:a")
    assert (spent, reserved, leases) == (20, 0, 0)  # both leases went back, with what their calls spent


def _server_deadlocks(db: Ledger) -> int:
    return int(db.sql.call(lambda tx: tx.execute(
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").fetchall())[0][0])


def _waiting_backends(db: Ledger) -> int:
    return int(db.sql.call(lambda tx: tx.execute(
        "SELECT count(DISTINCT l.pid) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE NOT l.granted AND a.datname = current_database()").fetchall())[0][0])


def test_a_lease_closed_while_its_worker_still_holds_on_it_counts_what_its_row_holds_then(postgres_url: str) -> None:
    import psycopg

    worker, other = Ledger(postgres_url, leases=True), Ledger(postgres_url)
    server = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)
    closing: list[list[str]] = []
    try:
        worker.accounts.ensure({"tenant:t": Caps(picos=1_000_000), "task:a": None})  # tokens: no cap
        held = worker.accounts.reserve(["tenant:t", "task:a"], Charge(picos=100, tokens=50), task_id="a",
                                       kind="execute")
        assert isinstance(held, Reservation)
        (lease_id,) = held.leases
        with psycopg.connect(server) as conn, psycopg.connect(server, autocommit=True) as watch:
            # The worker, alive after all, holds 70 more tokens on its lease (not yet committed).
            conn.execute("UPDATE leases SET held_tokens = held_tokens + 70 WHERE id = %s", (lease_id,))
            dead = {worker.worker_id: "a test took it for dead"}
            closer = threading.Thread(target=lambda: closing.append(
                other.sql.call(lambda tx: recover_leases_tx(tx, dead), alone=True)))
            closer.start()  # it reads the lease, then waits on the worker's row lock to delete it
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not watch.execute(
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE FROM leases%'"
            ).fetchall():
                time.sleep(0.01)
            conn.commit()
            closer.join(30)
        tenant = other.account("tenant:t")
    finally:
        worker.close()
        other.close()
    assert closing == [["tenant:t"]] and tenant is not None
    # An uncapped dimension is charged what was used and in flight on the lease when it was closed.
    assert tenant.spent_tokens == 50 + 70
