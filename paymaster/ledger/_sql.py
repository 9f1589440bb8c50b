"""The per-call statements' transport: a writer thread on a raw DB-API connection.

Reserve and settle run once per model call. Going through SQLAlchemy's
execution machinery costs ~0.1 ms a statement; the DB-API cursor costs a few
microseconds. The SQL is the same for every database: written with ``:name``
parameters and translated for drivers that use ``%(name)s``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..errors import ConfigurationError, LedgerError
from ._group import _pyformat
from ._reader import shown_url
from ._writer import Cursor, Pending, Tx, Writer, in_list, sqlite_pragmas

__all__ = ["Cursor", "SqlRunner", "Tx", "in_list", "sqlite_pragmas"]

T = TypeVar("T")


class SqlRunner:
    """Runs the per-call path's transactions on the ledger's writer thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        database = engine.url.database
        sqlite = engine.dialect.name == "sqlite"
        if sqlite and database in (None, "", ":memory:"):
            raise ConfigurationError(
                "an in-memory SQLite ledger cannot be shared by the ledger's writer thread; use a file "
                "(Runtime(ledger=\"paymaster.db\")) or a server URL"
            )

        def connect() -> Any:
            if sqlite:
                conn = sqlite3.connect(database or "", isolation_level=None, check_same_thread=False, timeout=30)
                sqlite_pragmas(conn)
                return conn
            # The driver's own connection, outside SQLAlchemy's pool: this thread keeps it for good.
            cargs, cparams = engine.dialect.create_connect_args(engine.url)
            return engine.dialect.loaded_dbapi.connect(*cargs, **cparams)

        def connect_inline() -> Any:
            # Never waits: a locked database sends the work to the writer thread instead.
            conn = sqlite3.connect(database or "", isolation_level=None, check_same_thread=False, timeout=0)
            sqlite_pragmas(conn)
            conn.execute("PRAGMA busy_timeout=0")
            conn.execute("PRAGMA wal_autocheckpoint=0")  # the writer thread checkpoints, off the loop
            return conn

        where = shown_url(str(engine.url))  # SQLAlchemy masks the URL's password, not a password= option
        self.writer = Writer(connect, sqlite=sqlite, where=where,
                             connect_inline=connect_inline if sqlite else None)
        self._where = where
        self._sqlite_file = database if sqlite else None
        self._reading = threading.Lock()
        self._read_conn: Any = None
        self._closed = False

    def call(
        self, fn: Callable[[Tx], T], *, may_abort: bool = False, locks: Sequence[str] = (), alone: bool = False
    ) -> T:
        """Run ``fn`` in a committed write transaction (blocks this thread, never the writer).

        ``locks`` names the accounts ``fn`` updates; ``alone`` runs it in a transaction of its own
        (see ``Writer.submit``).
        """
        return self.writer.call(fn, may_abort=may_abort, locks=locks, alone=alone)

    async def run(
        self, fn: Callable[[Tx], T], *, may_abort: bool = False, locks: Sequence[str] = (), alone: bool = False
    ) -> T:
        """Run ``fn`` in a committed write transaction, awaiting it without blocking the event loop."""
        return await self.writer.run(fn, may_abort=may_abort, locks=locks, alone=alone)

    def submit(
        self, fn: Callable[[Tx], T], *, may_abort: bool = False, locks: Sequence[str] = (), awaited: bool = False,
        alone: bool = False,
    ) -> Pending[T]:
        """Queue ``fn``; the future resolves once its group is committed (``locks``, ``awaited``, ``alone``: see
        the writer)."""
        return self.writer.submit(fn, may_abort=may_abort, locks=locks, awaited=awaited, alone=alone)

    def settle(self) -> None:
        """Return once the work this thread queued without waiting is committed (blocks this thread)."""
        self.writer.settle()

    def read(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Every row of one read-only query, read beside the writer thread, never through it."""
        # A connection of its own: a watch that polls every second must neither queue behind the writes
        # nor take SQLite's write lock, which would stall the writers of every process on the file.
        try:
            with self._reading:
                if self._closed:  # a late reader (a shadow run's check) must not open what nothing will close
                    raise LedgerError(f"the ledger {self._where} is closed")
                if self._sqlite_file is not None:
                    if self._read_conn is None:
                        # Autocommit: each query is its own WAL read, which no writer waits on.
                        self._read_conn = sqlite3.connect(self._sqlite_file, isolation_level=None,
                                                          check_same_thread=False, timeout=30)
                        self._read_conn.execute("PRAGMA busy_timeout=30000")
                    return list(self._read_conn.execute(sql, dict(params or {})).fetchall())
                with self.engine.connect() as conn:  # pooled; a server's reads take no lock a writer waits on
                    rows = conn.exec_driver_sql(_pyformat(sql), dict(params or {})).fetchall()
                    conn.rollback()
                    return [tuple(r) for r in rows]
        except (sqlite3.Error, SQLAlchemyError) as exc:
            raise LedgerError(f"cannot read the ledger {self._where}: {exc}") from exc

    def close(self) -> None:
        """Finish queued work and close the write connection (and the read one)."""
        self.writer.close()
        with self._reading:
            self._closed = True
            if self._read_conn is not None:
                self._read_conn.close()
                self._read_conn = None
