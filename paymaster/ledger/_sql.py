"""The per-call statements' transport: a writer thread on a raw DB-API connection.

Reserve and settle run once per model call. Going through SQLAlchemy's
execution machinery costs ~0.1 ms a statement; the DB-API cursor costs a few
microseconds. The SQL is the same for every database: written with ``:name``
parameters and translated for drivers that use ``%(name)s``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Engine

from ..errors import ConfigurationError
from ._reader import shown_url
from ._writer import Cursor, Pending, RunAgain, Tx, Writer, in_list, in_members, sqlite_pragmas

__all__ = ["Cursor", "RunAgain", "SqlRunner", "Tx", "in_list", "in_members", "sqlite_pragmas"]

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

    def close(self) -> None:
        """Finish queued work and close the write connection."""
        self.writer.close()
