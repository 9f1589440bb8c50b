"""Read-only SQL over a ledger, for reports, statements and reconciliation.

A SQLite file is read through the standard library's ``sqlite3``: the reading
commands then start without importing SQLAlchemy or SQLModel (a quarter of a
second here), which is most of what a user waits for on ``paymaster ledger``.
Any other URL goes through a ``Ledger`` and its SQLAlchemy engine. The SQL is
the same plain text either way, with ``:name`` parameters; the few
dialect-specific pieces (a tag's value, a UTC day, a tag's keys) come from
the reader.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, LedgerError

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from ._ledger import Ledger

# The same as ``_tables.TASK_STATUSES_OPEN`` (a test pins it); kept here so reading needs no SQLModel import.
OPEN_STATUSES = ("running", "awaiting_approval")
_DEFAULT_URL = "sqlite:///paymaster.db"
_PASSWORD = re.compile(r"^([a-z][a-z0-9+.-]*://[^:/@]*):[^@/]*@", re.IGNORECASE)
_PASSWORD_OPTION = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)  # psycopg takes one as a URL option too
_ENV = "PAYMASTER_LEDGER"

def ledger_url(url: str | Path | None) -> str:
    """The database URL a ledger argument means: the same rules as ``paymaster.ledger.resolve_url``."""
    if url is None:
        url = os.environ.get(_ENV) or _DEFAULT_URL
    if isinstance(url, Path) or "://" not in url:
        return f"sqlite:///{Path(url)}"
    scheme, rest = url.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"  # psycopg 3, from the `postgres` extra
    return url


def shown_url(url: str) -> str:
    """The URL to show in messages and reports: a password in it (or in a ``password=`` option) is ``***``."""
    return _PASSWORD_OPTION.sub(r"\1***", _PASSWORD.sub(r"\1:***@", url))


def _sqlite_file(url: str) -> Path | None:
    """The file of a plain ``sqlite:///PATH`` URL, else None (memory databases, other drivers, URL options)."""
    if not url.startswith("sqlite:///") or "?" in url:
        return None
    path = url[len("sqlite:///"):]
    return None if path in ("", ":memory:") else Path(path)


class Reader:
    """Runs read-only SQL on a ledger; ``close()`` when done (or use it as a context manager)."""

    def __init__(self, source: str | Path | Ledger | None = None) -> None:
        self._ledger: Ledger | None = None
        self._owns_ledger = False
        self._conn: sqlite3.Connection | None = None
        self._held: Connection | None = None  # the connection of an open PostgreSQL snapshot
        ledger = None
        if source is None or isinstance(source, str | Path):
            url = ledger_url(source)
        else:
            ledger, url = source, source.url  # a Ledger's url shows no password
        self.url = shown_url(url)
        path = _sqlite_file(url)
        if path is not None and path.is_file():
            # A stdlib connection of its own, for a Ledger's file too: the Ledger's engine would take the
            # write lock for every read, and stall the writers of every process on the file.
            self._conn = sqlite3.connect(path, timeout=30)
            self._conn.execute("PRAGMA busy_timeout=30000")
        elif ledger is not None:
            self._ledger = ledger
        else:
            # Other databases, or a file that does not exist yet: the Ledger creates and checks the tables.
            from ._ledger import Ledger

            self._ledger = Ledger(url)
            self._owns_ledger = True
        self.dialect = "sqlite" if self._conn is not None else self._engine_dialect()

    def _engine_dialect(self) -> str:
        assert self._ledger is not None
        return str(self._ledger.engine.dialect.name)

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every query inside reads one state of the ledger, so figures from several queries add up.

        SQLite: one read transaction (WAL readers see the state at their first read, writers go on).
        PostgreSQL: one REPEATABLE READ transaction.
        """
        if self._conn is not None:
            self._conn.execute("BEGIN")
            try:
                yield
            finally:
                self._conn.execute("COMMIT")
            return
        assert self._ledger is not None
        if self.dialect != "postgresql" or self._held is not None:
            yield
            return
        with self._ledger.engine.connect() as conn:
            self._held = conn.execution_options(isolation_level="REPEATABLE READ")
            try:
                with self._held.begin():
                    yield
            finally:
                self._held = None

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Every row of one query with ``:name`` parameters."""
        params = dict(params or {})
        try:
            if self._conn is not None:
                return self._conn.execute(sql, params).fetchall()
            return self._engine_rows(sql, params)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _engine_rows(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        assert self._ledger is not None
        try:
            if self._held is not None:
                return [tuple(r) for r in self._held.execute(text(sql), params).all()]
            with self._ledger.engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text(sql), params).all()]
        except SQLAlchemyError as exc:
            raise self._error(exc) from exc

    def _error(self, exc: Exception) -> LedgerError:
        text = str(exc)
        if "no such column" in text or "no such table" in text:
            return LedgerError(
                f"the ledger {self.url} lacks a table or column this Paymaster reads ({text}); it was written by "
                "another version: read it with that version, or upgrade it"
            )
        return LedgerError(f"reading the ledger {self.url} failed: {text}")

    # -- the dialect-specific pieces ---------------------------------------------

    def tag_value(self, key_param: str) -> str:
        """SQL for the value of the tag whose key is the parameter ``key_param`` (NULL when absent)."""
        if self.dialect == "sqlite":
            return f"json_extract(tags, '$.\"' || :{key_param} || '\"')"
        return f"(tags ->> :{key_param})"

    def utc_day(self, column: str) -> str:
        """SQL for the UTC day number (days since 1970-01-01) of an epoch-seconds column."""
        if self.dialect == "sqlite":
            return f"CAST({column} / 86400 AS INTEGER)"  # truncation is floor for the positive epochs here
        return f"CAST(FLOOR({column} / 86400) AS BIGINT)"

    def tags_text(self, alias: str = "tasks") -> str:
        """SQL for a task's tags as JSON text, which every database can group by."""
        return f"{alias}.tags" if self.dialect == "sqlite" else f"CAST({alias}.tags AS TEXT)"

    def tag_pairs(self, alias: str = "tasks") -> tuple[str, str, str]:
        """A FROM-clause addition yielding one row per (tag key, tag value) of a task, and the two columns."""
        if self.dialect == "sqlite":
            return f", json_each({alias}.tags) AS tag", "tag.key", "tag.value"
        return f", json_each_text({alias}.tags) AS tag", "tag.key", "tag.value"

    def close(self) -> None:
        """Release the connection (and the ledger this reader opened)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._ledger is not None and self._owns_ledger:
            self._ledger.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def as_reader(source: Reader | Ledger) -> Reader:
    """A reader over ``source`` (a ledger or a reader already)."""
    return source if isinstance(source, Reader) else Reader(source)


def open_reader(url: str | Path | None, *, must_exist: bool = False) -> Reader:
    """A reader over the ledger at ``url``; a bad URL is a ConfigurationError naming it.

    ``must_exist`` (the reading commands) refuses a SQLite path with no ledger rather than create one.
    """
    if must_exist:
        from ._paths import check_ledger_path, check_sqlite_file

        path = _sqlite_file(ledger_url(url))
        if path is not None:
            check_sqlite_file(path, must_exist=True)  # a plain path: no SQLAlchemy needed to check it
        else:
            check_ledger_path(ledger_url(url), must_exist=True)
    try:
        return Reader(url)
    except sqlite3.Error as exc:
        raise ConfigurationError(f"cannot open ledger {ledger_url(url)!r}: {exc}") from None


def in_params(prefix: str, values: Sequence[str]) -> tuple[str, dict[str, str]]:
    """An ``IN (...)`` list of named parameters for ``values``, and the parameters."""
    names = [f"{prefix}{i}" for i in range(len(values))]
    return "(" + ", ".join(f":{n}" for n in names) + ")", dict(zip(names, values, strict=True))
