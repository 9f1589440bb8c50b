"""The ledger: tasks, steps and budget accounts in one SQL database.

Reads and bookkeeping go through SQLModel; the per-call path (reserve, settle)
is two short Core transactions, because it runs once per model call.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
from sqlalchemy import Connection, Engine, create_engine, event, func, inspect, select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, SQLModel, col

from ..errors import ConfigurationError, LedgerError
from ._accounts import Accounts, Caps, Charge, Refusal, Reservation, ensure_tx, insert_step
from ._leases import LEASE_SECONDS
from ._liveness import HEARTBEAT_SECONDS, beat_tx, leave_tx, new_worker_id, register_tx
from ._paths import check_ledger_path
from ._reader import ledger_url, shown_url
from ._sql import SqlRunner, Tx
from ._tables import AccountRecord, ReservationRecord, StepRecord, TaskRecord, add_missing_indexes
from ._tasks import Totals, check_task_columns, insert_task_tx, update_task_tx
from ._writer import Pending, sqlite_pragmas

T = TypeVar("T")
_log = logging.getLogger("paymaster.ledger")
_UNSET = object()
RECOVERY_INTERVAL_SECONDS = 2.0  # how often a waiting process may look for a dead peer's holds
DEFAULT_LEDGER_URL = "sqlite:///paymaster.db"
LEDGER_ENV = "PAYMASTER_LEDGER"
SCHEMA_LOCK = 0x7061796D  # "paym": the PostgreSQL advisory lock held while the schema is created or upgraded


def resolve_url(url: str | Path | None) -> str:
    """Turn ``None``, a path or a URL into a database URL (env PAYMASTER_LEDGER, else ./paymaster.db).

    ``postgresql://`` and ``postgres://`` mean psycopg 3 (``postgresql+psycopg://``).
    """
    return ledger_url(url)


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # Autocommit at the driver level so SQLAlchemy's "begin" hook decides how
    # transactions start; the same pragmas as the per-call connection.
    dbapi_conn.isolation_level = None
    sqlite_pragmas(dbapi_conn)


def _sqlite_begin(conn: Connection) -> None:
    # Take the write lock up front: a reservation's read-check-write must not
    # interleave with another process's.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class Ledger:
    """Records tasks, steps and budget accounts in a SQL database (SQLite file by default).

    Each Ledger is a worker: it keeps a heartbeat row that expires
    ``heartbeat_seconds`` after its last beat (it beats every third of that,
    off the event loop). Once it has expired, any other worker sharing the
    database closes its open calls at their worst case and its tasks as
    ``interrupted`` (see ``_liveness``).

    ``leases=True``: calls hold their worst case on slices (leases) of the
    shared accounts that this worker takes and returns, instead of on the shared
    rows themselves: many workers on one busy account then rarely write its row
    (see ``_leases``). A kill switch or a cap change reaches a leasing worker
    within ``LEASE_SECONDS``.
    """

    def __init__(
        self,
        url: str | Path | None = None,
        *,
        echo: bool = False,
        create_schema: bool = True,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        leases: bool = False,
    ) -> None:
        full = resolve_url(url)
        self.url = shown_url(full)  # for messages and reports: never the password
        check_ledger_path(full)
        try:
            self.engine: Engine = create_engine(full, echo=echo)
        except ImportError as exc:
            extra = " (pip install 'paymaster[postgres]')" if full.startswith("postgresql") else ""
            raise ConfigurationError(f"cannot open ledger {self.url!r}: {exc}{extra}") from None
        except (SQLAlchemyError, ValueError) as exc:
            raise ConfigurationError(f"cannot open ledger {self.url!r}: {exc}") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        try:
            if create_schema:
                self.create_schema()
            else:
                with self.engine.connect() as conn:
                    self._check_schema(conn, fix=False)
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise LedgerError(f"cannot read the ledger {self.url!r}: {exc}") from exc
        except BaseException:
            self.engine.dispose()
            raise
        self._steps = StepRecord.__table__  # type: ignore[attr-defined]
        self._reservations = ReservationRecord.__table__  # type: ignore[attr-defined]
        if not heartbeat_seconds > 0:
            raise ConfigurationError(f"heartbeat_seconds must be > 0, got {heartbeat_seconds}")
        self.sql = SqlRunner(self.engine)
        self.accounts = Accounts(self.sql, leases=leases)
        self._ensured: dict[str, object] = {}
        self._failures: dict[str, BaseException] = {}
        self._unwritten: dict[str, tuple[dict[str, Any], Pending[None]]] = {}  # task rows queued, not yet inserted
        self._unwritten_lock = threading.Lock()
        self._next_recovery = 0.0
        self.heartbeat_seconds = heartbeat_seconds
        self.worker_id = self.accounts.owner = new_worker_id()
        self.sql.call(partial(register_tx, worker=self.worker_id, now=time.time(), expiry=heartbeat_seconds))
        self._stopping = threading.Event()
        self._beats = threading.Thread(target=self._beat, name="paymaster-ledger-heartbeat", daemon=True)
        self._beats.start()

    def _beat(self) -> None:
        """Refresh this worker's heartbeat; close dead workers' holds when there are any (a thread)."""
        next_beat = time.monotonic() + self.heartbeat_seconds / 3
        tick = self.heartbeat_seconds / 3
        if self.accounts.leases is not None:
            tick = min(tick, LEASE_SECONDS)
        while not self._stopping.wait(tick):
            try:
                # Idle leases past their time go back to their accounts, for other workers to use.
                self.accounts.return_leases()
                if time.monotonic() < next_beat:
                    continue
                next_beat = time.monotonic() + self.heartbeat_seconds / 3
                alive, others_expired = self.sql.call(
                    partial(beat_tx, worker=self.worker_id, now=time.time(), expiry=self.heartbeat_seconds), alone=True
                )
                if not alive:  # declared dead while paused: what it held is closed; carry on as a new worker
                    worker = new_worker_id()
                    self.sql.call(partial(register_tx, worker=worker, now=time.time(), expiry=self.heartbeat_seconds))
                    self.worker_id = self.accounts.owner = worker
                    if self.accounts.leases is not None:
                        self.accounts.leases.clear()  # closed at their worst case by whoever declared it dead
                if others_expired:
                    self.accounts.recover()
            except LedgerError:
                continue  # the database is unreachable for now: the next beat tries again

    def create_schema(self) -> None:
        """Create the ledger's tables, or add the optional columns and indexes a newer Paymaster has; safe to
        run at once from many workers.

        On PostgreSQL the whole change is one transaction holding an advisory lock,
        so a fleet of workers starting together creates the tables exactly once,
        and a reader never sees half of them. ``Ledger(url)`` calls this unless
        given ``create_schema=False`` (for a deployment that creates the schema
        as a step of its own and gives workers a role without DDL rights); such
        a ledger only checks that the schema is there and up to date.
        """
        try:
            if self.engine.dialect.name == "postgresql":
                with self.engine.begin() as conn:
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")
                    SQLModel.metadata.create_all(conn)
                    self._check_schema(conn)
                    add_missing_indexes(conn)
            else:
                SQLModel.metadata.create_all(self.engine)
                with self._tx() as conn:
                    self._check_schema(conn)
                    add_missing_indexes(conn)
        except SQLAlchemyError as exc:
            raise LedgerError(f"cannot create ledger tables in {self.url!r}: {exc}") from exc

    def _check_schema(self, conn: Connection, fix: bool = True) -> None:
        """Refuse a ledger written by an older schema, rather than fail mid-task on a missing column."""
        inspector = inspect(conn)
        missing: list[str] = []
        addable: list[tuple[str, Any]] = []
        for table in SQLModel.metadata.sorted_tables:
            have = {c["name"] for c in inspector.get_columns(table.name)} if inspector.has_table(table.name) else set()
            for column in table.columns:
                if column.name in have:
                    continue
                missing.append(f"{table.name}.{column.name}")
                if column.nullable and column.server_default is None and not column.primary_key:
                    addable.append((table.name, column))
        if missing and not fix:
            raise LedgerError(
                f"the ledger {self.url} lacks {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; "
                "create or upgrade its schema once with Ledger(url).create_schema() (safe while workers run)"
            )
        if missing and len(addable) == len(missing):
            # Only new optional columns (e.g. steps.request_id): adding them loses nothing.
            for table_name, column in addable:
                kind = column.type.compile(dialect=self.engine.dialect)
                conn.exec_driver_sql(f"ALTER TABLE {table_name} ADD COLUMN {column.name} {kind}")
            return
        if missing:
            raise LedgerError(
                f"the ledger {self.url} was written by an older Paymaster and lacks {', '.join(missing)}; "
                "keep it for reading with the version that wrote it and point this one at a new file "
                "(Runtime(ledger=...) or PAYMASTER_LEDGER)"
            )

    def close(self) -> None:
        """Stop beating, leave the workers table, release the database connections."""
        self._stopping.set()
        self._beats.join()
        with suppress(LedgerError):  # an unreachable database: recovery closes them once the heartbeat expires
            self.sql.settle()  # settlements still queued: then every lease is idle, and goes back
            self.accounts.return_leases(due_only=False)
        with suppress(LedgerError):  # an unreachable database: the row simply expires
            self.sql.call(partial(leave_tx, worker=self.worker_id))
        self.sql.close()
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise LedgerError(f"ledger write failed ({self.url}): {exc}") from exc

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A SQLModel session for queries (it sees every write this thread has queued)."""
        self.sql.settle()
        with Session(self.engine) as s:
            yield s

    # -- tasks -------------------------------------------------------------

    def open_task(self, record: TaskRecord) -> None:
        """Insert a new task row."""
        with self._tx() as conn:
            conn.execute(TaskRecord.__table__.insert().values(**record.model_dump()))  # type: ignore[attr-defined]

    def update_task(self, task_id: str, **values: Any) -> None:
        """Set fields of a task row (e.g. its plan once known)."""
        with self._tx() as conn:
            conn.execute(
                TaskRecord.__table__.update().where(TaskRecord.__table__.c.id == task_id).values(**values)  # type: ignore[attr-defined]
            )

    def finish_task(
        self,
        task_id: str,
        *,
        status: str,
        stop_reason: str | None,
        output: str | None,
        success: bool | None,
    ) -> TaskRecord:
        """Close a task: its status, outcome and totals summed from its steps."""
        steps = self._steps
        with self._tx() as conn:
            row = conn.execute(
                select(
                    func.coalesce(func.sum(steps.c.cost_picos), 0),
                    func.coalesce(func.sum(steps.c.baseline_picos), 0),
                    func.coalesce(func.sum(steps.c.input_tokens), 0),
                    func.coalesce(func.sum(steps.c.output_tokens), 0),
                    func.count().filter(steps.c.status.in_(("ok", "error", "unsettled"))
                                        & steps.c.kind.notin_(("tool", "cache_hit"))),
                    func.count().filter(steps.c.cost_picos.is_(None) & steps.c.status.in_(("ok", "error"))),
                    func.coalesce(func.sum(steps.c.saved_picos), 0),
                    func.count().filter(steps.c.kind == "cache_hit"),
                ).where(steps.c.task_id == task_id)
            ).one()
            conn.execute(
                TaskRecord.__table__.update()  # type: ignore[attr-defined]
                .where(TaskRecord.__table__.c.id == task_id)  # type: ignore[attr-defined]
                .values(
                    status=status,
                    stop_reason=stop_reason,
                    output=output,
                    success=success,
                    cost_picos=int(row[0]),
                    baseline_picos=int(row[1]),
                    input_tokens=int(row[2]),
                    output_tokens=int(row[3]),
                    calls=int(row[4]),
                    unpriced_calls=int(row[5]),
                    saved_picos=int(row[6]),
                    cache_hits=int(row[7]),
                    finished_at=time.time(),
                )
            )
        task = self.task(task_id)
        assert task is not None
        return task

    def task(self, task_id: str) -> TaskRecord | None:
        """One task by id (a unique prefix of the id also matches)."""
        with self.session() as s:
            found = s.get(TaskRecord, task_id)
            if found is not None:
                return found
            matches = s.exec(
                select(TaskRecord).where(col(TaskRecord.id).startswith(task_id)).limit(2)  # type: ignore[call-overload]
            ).all()
            return matches[0][0] if len(matches) == 1 else None

    def tasks(self, *, limit: int = 50, tenant: str | None = None, agent: str | None = None) -> list[TaskRecord]:
        """The most recent tasks, newest first."""
        with self.session() as s:
            query = select(TaskRecord).order_by(col(TaskRecord.created_at).desc()).limit(limit)
            if tenant is not None:
                query = query.where(col(TaskRecord.tenant) == tenant)
            if agent is not None:
                query = query.where(col(TaskRecord.agent) == agent)
            return [r[0] for r in s.exec(query).all()]  # type: ignore[call-overload]

    def steps(self, task_id: str) -> list[StepRecord]:
        """Every step of a task, in the order they were recorded."""
        with self.session() as s:
            query = select(StepRecord).where(col(StepRecord.task_id) == task_id).order_by(col(StepRecord.id))
            return [r[0] for r in s.exec(query).all()]  # type: ignore[call-overload]

    # -- accounts and the per-call path -------------------------------------

    def account(self, account_id: str) -> AccountRecord | None:
        """An account's current caps, spend and reservations."""
        with self.session() as s:
            return s.get(AccountRecord, account_id)

    def reserve(self, accounts: Sequence[str], held: Charge, **where: Any) -> Reservation | Refusal:
        """Hold ``held`` on every account at once, or on none (see ``Accounts.reserve``)."""
        return self.accounts.reserve(accounts, held, **where)

    def settle(self, reservation: Reservation, spent: Charge, step: Mapping[str, Any]) -> None:
        """Move a reservation to ``spent`` and write its step row, in one transaction."""
        self.accounts.settle(reservation, spent, step)

    def recover(self) -> list[str]:
        """Close reservations and tasks left open by dead workers; returns the task ids affected.

        A worker is dead when its heartbeat has expired (on any host) or, on this
        host, when its process is gone. Its reservations are charged at their
        worst case (status ``unsettled``) and its tasks end as ``interrupted``.
        """
        return self.accounts.recover()

    def served_models(self) -> dict[tuple[str, str], dict[str, int]]:
        """What each requested model has been seen served as: (provider, requested) -> {served: max output}."""
        rows = self.sql.call(lambda tx: list(tx.execute(
            "SELECT provider, requested, served, max_output_tokens FROM served_models"
        ).fetchall()))
        found: dict[tuple[str, str], dict[str, int]] = {}
        for provider, requested, served, max_output in rows:
            found.setdefault((provider, requested), {})[served] = int(max_output)
        return found

    def remember_served(self, provider: str, requested: str, served: str, output_tokens: int) -> Pending[Any]:
        """Durably note that ``served`` answered a request for ``requested`` with ``output_tokens`` of output."""
        params = {"p": provider, "r": requested, "s": served, "o": output_tokens, "t": time.time()}
        return self.sql.submit(lambda tx: tx.execute(
            "INSERT INTO served_models (provider, requested, served, max_output_tokens, first_seen)"
            " VALUES (:p, :r, :s, :o, :t) ON CONFLICT (provider, requested, served) DO UPDATE SET"
            " max_output_tokens = CASE WHEN excluded.max_output_tokens > served_models.max_output_tokens"
            " THEN excluded.max_output_tokens ELSE served_models.max_output_tokens END",
            params,
        ))

    def record_step(self, step: Mapping[str, Any]) -> None:
        """Write a step that holds no reservation (a refusal, a free tool call, a cache hit)."""
        row = dict(step)
        self.sql.call(lambda tx: insert_step(tx, row))

    # -- the lean per-task path (used by the runtime; never blocks the event loop) ---------

    def open_task_later(self, record: Mapping[str, Any], accounts: Mapping[str, Caps | None]) -> Pending[None]:
        """Queue a new task row and the accounts it needs; later work on the task is queued behind it."""
        # Shared accounts need creating (or their caps setting) once per process, not once per task.
        fresh = {a: c for a, c in accounts.items() if self._ensured.get(a, _UNSET) != c}
        self._ensured.update(fresh)

        row = {**record, "owner": self.worker_id}  # the worker whose heartbeat vouches for the task
        task_id = str(record["id"])

        def work(tx: Tx) -> None:
            with self._unwritten_lock:  # from here on, changes to the row are statements of their own
                self._unwritten.pop(task_id, None)
                values = dict(row)
            insert_task_tx(tx, values)
            ensure_tx(tx, fresh)

        future = self.sql.submit(work, locks=list(fresh))
        with self._unwritten_lock:
            self._unwritten[task_id] = (row, future)
        return self.watch(task_id, future)

    def update_task_later(self, task_id: str, **values: Any) -> Pending[None]:
        """Queue an update of a task row (its plan, its status while it waits for approval)."""
        check_task_columns(values)
        with self._unwritten_lock:
            unwritten = self._unwritten.get(task_id)
            if unwritten is not None:  # its insert has not run yet: it takes the values (one statement less)
                unwritten[0].update(values)
                return unwritten[1]
        return self.watch(task_id, self.sql.submit(lambda tx: update_task_tx(tx, task_id, values)))

    def record_step_later(self, step: Mapping[str, Any]) -> Pending[None]:
        """Queue a step that holds no reservation (a refusal, a free tool call, a cache hit)."""
        row = dict(step)
        return self.watch(str(row["task_id"]), self.sql.submit(lambda tx: insert_step(tx, row)))

    def watch(self, task_id: str, future: Pending[T]) -> Pending[T]:
        """Remember a queued write's failure against its task, to report when the task finishes."""

        def check(done: Pending[T]) -> None:
            error = done.exception()
            if error is not None:
                self._failures.setdefault(task_id, error)

        future.add_done_callback(check)
        return future

    async def afinish_task(self, task_id: str, totals: Totals, **values: Any) -> None:
        """Queue a task's closing row (status, outcome, totals); raises if an earlier write of it was lost.

        The row is not awaited: it shares the next commit (the next call's
        reservation, or the moment's flush), as a settlement may. A crash before
        it is written leaves the task open and its holds in place; recovery then
        closes both at their worst case, so spend is never under-counted.
        ``flush`` or a read through this ledger waits for it.
        """
        row = {**values, **totals.as_row(), "finished_at": time.time()}
        closing = self.sql.submit(lambda tx: update_task_tx(tx, task_id, row))

        def check(done: Pending[None]) -> None:
            # Nobody awaits the closing row: a failure to write it (or an earlier write still queued
            # with it) is reported in the log, and recovery closes the task at its worst case.
            error = done.exception() or self._failures.pop(task_id, None)
            if error is not None:
                _log.error("the ledger lost the closing write of task %s: %s", task_id, error)

        closing.add_done_callback(check)
        failure = self._failures.pop(task_id, None)
        if failure is not None:
            raise LedgerError(f"the ledger lost a write of task {task_id}: {failure}") from failure

    async def aflush(self) -> None:
        """``flush`` for the event loop that queued the writes, without blocking it."""
        await self.sql.run(lambda tx: None)

    def flush(self) -> None:
        """Return once the writes this thread queued without waiting (closing rows, settlements) are committed."""
        self.sql.settle()

    async def arecover(self) -> list[str]:
        """``recover`` off the event loop, at most once per interval per process (for waiting calls)."""
        now = time.monotonic()
        if now < self._next_recovery:
            return []
        self._next_recovery = now + RECOVERY_INTERVAL_SECONDS
        return await anyio.to_thread.run_sync(self.recover)


def new_task_id() -> str:
    """A fresh, sortable-enough task id."""
    return secrets.token_hex(8)  # 64 random bits, as the uuid4 prefix it replaces, without building a UUID
