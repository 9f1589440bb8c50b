"""The ledger: tasks, steps and budget accounts in one SQL database.

Reads and bookkeeping go through SQLModel; the per-call path (reserve, settle)
is two short Core transactions, because it runs once per model call. The
database's engine and schema are ``_database``'s; the lean per-task path that
queues task rows without waiting is ``_queued``'s, which ``Ledger`` inherits.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col

from ..errors import ConfigurationError, LedgerError
from . import _database
from ._accounts import Accounts, Charge, Refusal, Reservation, insert_step
from ._leases import LEASE_SECONDS
from ._liveness import HEARTBEAT_SECONDS, beat_tx, leave_tx, new_worker_id, register_tx
from ._paths import check_ledger_path
from ._queued import QueuedWrites
from ._reader import Reader, ledger_url, shown_url
from ._sql import SqlRunner, in_list
from ._tables import AccountRecord, ReservationRecord, StepRecord, TaskRecord
from ._writer import Pending

TICK_SECONDS = min(LEASE_SECONDS, 1.0)  # how often the heartbeat thread returns idle leases and runs on_tick
RECOVERY_INTERVAL_SECONDS = 2.0  # how often a waiting process may look for a dead peer's holds
DEFAULT_LEDGER_URL = "sqlite:///paymaster.db"
LEDGER_ENV = "PAYMASTER_LEDGER"


def resolve_url(url: str | Path | None) -> str:
    """Turn ``None``, a path or a URL into a database URL (env PAYMASTER_LEDGER, else ./paymaster.db).

    ``postgresql://`` and ``postgres://`` mean psycopg 3 (``postgresql+psycopg://``).
    """
    return ledger_url(url)


class Ledger(QueuedWrites):
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
        self.engine: Engine = _database.open_engine(full, self.url, echo=echo)
        try:
            if create_schema:
                self.create_schema()
            else:
                with self.engine.connect() as conn:
                    _database.check_schema(conn, self.engine, self.url, fix=False)
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
        self.on_tick: list[Callable[[], None]] = []  # called about once a second from the heartbeat thread
        self._stopping = threading.Event()
        self._beats = threading.Thread(target=self._beat, name="paymaster-ledger-heartbeat", daemon=True)
        self._beats.start()

    def _beat(self) -> None:
        """Refresh this worker's heartbeat; close dead workers' holds when there are any (a thread)."""
        next_beat = time.monotonic() + self.heartbeat_seconds / 3
        tick = min(self.heartbeat_seconds / 3, TICK_SECONDS)
        while not self._stopping.wait(tick):
            try:
                # Idle leases past their time go back to their accounts, for other workers to use.
                self.accounts.return_leases()
                for hook in list(self.on_tick):
                    hook()
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
        _database.create_schema(self.engine, self.url)

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

    def _tx(self) -> AbstractContextManager[Connection]:
        return _database.write_tx(self.engine, self.url)

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

    def killed_among(self, account_ids: Iterable[str]) -> set[str]:
        """Which of these accounts have their kill flag set (thrown by any worker on the ledger)."""
        ids = sorted(set(account_ids))
        if not ids:
            return set()
        # A read beside the writer, never through it: a watch that asks every second must not queue behind the
        # writes, nor (SQLite) take the write lock that the writers of every process wait for.
        members, params = in_list("a", ids)
        with Reader(self) as reader:
            return {str(r[0]) for r in reader.rows(f"SELECT id FROM accounts WHERE killed = 1 AND id IN {members}",
                                                   params)}

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
