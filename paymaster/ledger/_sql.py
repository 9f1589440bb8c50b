"""The per-call statements' transport: a raw sqlite3 connection for SQLite files, SQLAlchemy otherwise.

Reserve and settle run once per model call. Going through SQLAlchemy's
execution machinery costs ~0.1 ms a statement here; the DB-API cursor costs a
few microseconds. The SQL is the same either way: written with ``:name``
parameters and translated for drivers that use ``%(name)s``.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..errors import LedgerError

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class Cursor(Protocol):
    """What the per-call path needs of a cursor."""

    @property
    def rowcount(self) -> int: ...

    def fetchall(self) -> Sequence[Any]: ...


class Tx:
    """One open write transaction; ``abort()`` rolls it back at the end instead of committing."""

    def __init__(self, run: Any) -> None:
        self._run = run
        self.aborted = False

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Cursor:
        """Run one statement with ``:name`` parameters."""
        result: Cursor = self._run(sql, dict(params or {}))
        return result

    def abort(self) -> None:
        """Roll the transaction back when the block ends."""
        self.aborted = True


def in_list(prefix: str, values: Sequence[str]) -> tuple[str, dict[str, str]]:
    """An ``IN (...)`` list of named parameters for ``values``, and the parameters."""
    names = [f"{prefix}{i}" for i in range(len(values))]
    return "(" + ", ".join(f":{n}" for n in names) + ")", dict(zip(names, values, strict=True))


@lru_cache(maxsize=256)
def _pyformat(sql: str) -> str:
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))


def sqlite_pragmas(conn: Any) -> None:
    """WAL so readers run beside the one writer; NORMAL sync is durable against a process crash."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")


class SqlRunner:
    """Opens short write transactions for the per-call path."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._raw: sqlite3.Connection | None = None
        database = engine.url.database
        if engine.dialect.name == "sqlite" and database not in (None, "", ":memory:"):
            self._raw = sqlite3.connect(database, isolation_level=None, check_same_thread=False, timeout=30)
            sqlite_pragmas(self._raw)
        self._pyformat = engine.dialect.paramstyle in ("pyformat", "format")

    @contextmanager
    def tx(self) -> Iterator[Tx]:
        """A write transaction: on SQLite it takes the write lock up front (BEGIN IMMEDIATE)."""
        if self._raw is not None:
            with self._lock:
                cur = self._raw.cursor()
                try:
                    cur.execute("BEGIN IMMEDIATE")
                    tx = Tx(lambda sql, params: cur.execute(sql, params))
                    try:
                        yield tx
                    except BaseException:
                        self._raw.execute("ROLLBACK")
                        raise
                    self._raw.execute("ROLLBACK" if tx.aborted else "COMMIT")
                except sqlite3.Error as exc:
                    raise LedgerError(f"ledger write failed ({self.engine.url}): {exc}") from exc
                finally:
                    cur.close()
            return
        try:
            with self.engine.begin() as conn:
                translate = _pyformat if self._pyformat else (lambda s: s)
                tx = Tx(lambda sql, params: conn.exec_driver_sql(translate(sql), params))
                yield tx
                if tx.aborted:
                    conn.rollback()
        except SQLAlchemyError as exc:
            raise LedgerError(f"ledger write failed ({self.engine.url}): {exc}") from exc

    def close(self) -> None:
        """Close the raw connection."""
        if self._raw is not None:
            self._raw.close()
            self._raw = None
