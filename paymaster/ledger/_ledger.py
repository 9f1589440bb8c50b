"""The ledger: tasks, steps and budget accounts in one SQL database.

Reads and bookkeeping go through SQLModel; the per-call path (reserve, settle)
is two short Core transactions, because it runs once per model call.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, SQLModel, col

from ..errors import ConfigurationError, LedgerError
from ._tables import AccountRecord, ReservationRecord, StepRecord, TaskRecord

DEFAULT_LEDGER_URL = "sqlite:///paymaster.db"
LEDGER_ENV = "PAYMASTER_LEDGER"
RESERVATION_TTL_SECONDS = 15 * 60


@dataclass(frozen=True, slots=True)
class Charge:
    """An amount held or spent: pico-dollars, tokens and model calls."""

    picos: int = 0
    tokens: int = 0
    calls: int = 0


@dataclass(frozen=True, slots=True)
class Caps:
    """Limits of one account; ``None`` means unlimited."""

    picos: int | None = None
    tokens: int | None = None
    calls: int | None = None


@dataclass(frozen=True, slots=True)
class Reservation:
    """A hold on every account of a chain, to be settled once the call's cost is known."""

    id: str
    accounts: tuple[str, ...]
    held: Charge


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a reservation did not fit: the account and the cap it would have passed."""

    account: str
    dimension: str  # "usd", "tokens" or "calls"
    cap: int
    used: int  # spent + reserved at the time of the refusal
    needed: int


def resolve_url(url: str | Path | None) -> str:
    """Turn ``None``, a path or a URL into a database URL (env PAYMASTER_LEDGER, else ./paymaster.db)."""
    if url is None:
        url = os.environ.get(LEDGER_ENV) or DEFAULT_LEDGER_URL
    if isinstance(url, Path) or "://" not in url:
        return f"sqlite:///{Path(url)}"
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Autocommit at the driver level so SQLAlchemy's "begin" hook decides how
    # transactions start; WAL lets readers run beside the one writer.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    # Take the write lock up front: a reservation's read-check-write must not
    # interleave with another process's.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


_RESERVE = text(
    "UPDATE accounts SET reserved_picos = reserved_picos + :picos,"
    " reserved_tokens = reserved_tokens + :tokens, reserved_calls = reserved_calls + :calls"
    " WHERE id = :id"
    " AND (cap_picos IS NULL OR spent_picos + reserved_picos + :picos <= cap_picos)"
    " AND (cap_tokens IS NULL OR spent_tokens + reserved_tokens + :tokens <= cap_tokens)"
    " AND (cap_calls IS NULL OR spent_calls + reserved_calls + :calls <= cap_calls)"
)
_SETTLE = text(
    "UPDATE accounts SET reserved_picos = reserved_picos - :held_picos,"
    " reserved_tokens = reserved_tokens - :held_tokens, reserved_calls = reserved_calls - :held_calls,"
    " spent_picos = spent_picos + :picos, spent_tokens = spent_tokens + :tokens,"
    " spent_calls = spent_calls + :calls WHERE id = :id"
)


class Ledger:
    """Records tasks, steps and budget accounts in a SQL database (SQLite file by default)."""

    def __init__(self, url: str | Path | None = None, *, echo: bool = False) -> None:
        self.url = resolve_url(url)
        try:
            self.engine: Engine = create_engine(self.url, echo=echo)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise ConfigurationError(f"cannot open ledger {self.url!r}: {exc}") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        try:
            SQLModel.metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise LedgerError(f"cannot create ledger tables in {self.url!r}: {exc}") from exc
        self._steps = StepRecord.__table__  # type: ignore[attr-defined]
        self._reservations = ReservationRecord.__table__  # type: ignore[attr-defined]

    def close(self) -> None:
        """Release the database connections."""
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
        """A SQLModel session for queries."""
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

    def ensure_account(self, account_id: str, caps: Caps) -> None:
        """Create an account with ``caps`` if it does not exist yet (existing caps are kept)."""
        with self._tx() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM accounts WHERE id = :id"), {"id": account_id}
            ).first()
            if exists is None:
                conn.execute(
                    AccountRecord.__table__.insert().values(  # type: ignore[attr-defined]
                        id=account_id, cap_picos=caps.picos, cap_tokens=caps.tokens, cap_calls=caps.calls
                    )
                )

    def account(self, account_id: str) -> AccountRecord | None:
        """An account's current caps, spend and reservations."""
        with self.session() as s:
            return s.get(AccountRecord, account_id)

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
        ids = sorted(set(accounts))  # one lock order for every writer
        now = time.time()
        rid = uuid.uuid4().hex
        with self._tx() as conn:
            for account_id in ids:
                params = {"id": account_id, "picos": held.picos, "tokens": held.tokens, "calls": held.calls}
                if conn.execute(_RESERVE, params).rowcount != 1:
                    refusal = self._why_refused(conn, account_id, held)
                    conn.rollback()
                    return refusal
            conn.execute(
                self._reservations.insert().values(
                    id=rid, task_id=task_id, accounts=ids, picos=held.picos, tokens=held.tokens,
                    calls=held.calls, kind=kind, subtask_id=subtask_id, provider=provider, model=model,
                    tier=tier, pid=os.getpid(), created_at=now, expires_at=now + ttl_seconds,
                )
            )
        return Reservation(rid, tuple(ids), held)

    @staticmethod
    def _why_refused(conn: Connection, account_id: str, held: Charge) -> Refusal:
        row = conn.execute(
            text(
                "SELECT cap_picos, spent_picos + reserved_picos, cap_tokens, spent_tokens + reserved_tokens,"
                " cap_calls, spent_calls + reserved_calls FROM accounts WHERE id = :id"
            ),
            {"id": account_id},
        ).first()
        if row is None:
            raise LedgerError(f"budget account {account_id!r} does not exist; it must be created before use")
        for dimension, cap, used, need in (
            ("usd", row[0], row[1], held.picos),
            ("tokens", row[2], row[3], held.tokens),
            ("calls", row[4], row[5], held.calls),
        ):
            if cap is not None and used + need > cap:
                return Refusal(account_id, dimension, int(cap), int(used), need)
        raise LedgerError(f"reservation on {account_id!r} refused but no cap is exceeded")

    def settle(self, reservation: Reservation, spent: Charge, step: Mapping[str, Any]) -> None:
        """Move a reservation to ``spent`` and write its step row, in one transaction."""
        held = reservation.held
        with self._tx() as conn:
            deleted = conn.execute(
                self._reservations.delete().where(self._reservations.c.id == reservation.id)
            ).rowcount
            if deleted == 1:
                for account_id in reservation.accounts:
                    conn.execute(
                        _SETTLE,
                        {
                            "id": account_id, "held_picos": held.picos, "held_tokens": held.tokens,
                            "held_calls": held.calls, "picos": spent.picos, "tokens": spent.tokens,
                            "calls": spent.calls,
                        },
                    )
                conn.execute(self._steps.insert().values(**step))
            else:
                # Another process judged this reservation stale and already charged
                # its worst case; charging again would count the call twice.
                note = "settled late: its worst case was already charged as unsettled"
                conn.execute(self._steps.insert().values(**{**step, "note": note, "cost_picos": 0}))

    def record_step(self, step: Mapping[str, Any]) -> None:
        """Write a step that holds no reservation (a refusal, a free tool call, a cache hit)."""
        with self._tx() as conn:
            conn.execute(self._steps.insert().values(**step))


def new_task_id() -> str:
    """A fresh, sortable-enough task id."""
    return uuid.uuid4().hex[:16]
