"""The ledger's database: its engine, its bookkeeping transactions, and a schema created once and checked.

``open_engine`` makes the SQLAlchemy engine for a ledger URL (a URL it cannot
open is a ConfigurationError); on SQLite its connections get the per-call
path's pragmas and take the write lock as a transaction begins.
``create_schema`` creates the tables, or adds the optional columns and indexes
a newer Paymaster has, safely from many workers at once; ``check_schema``
refuses a database whose schema is older than this Paymaster's, rather than
fail mid-task on a missing column. Database errors are reported as LedgerError.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import SQLModel

from ..errors import ConfigurationError, LedgerError
from ._tables import add_missing_indexes
from ._writer import sqlite_pragmas

SCHEMA_LOCK = 0x7061796D  # "paym": the PostgreSQL advisory lock held while the schema is created or upgraded


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # Autocommit at the driver level so SQLAlchemy's "begin" hook decides how
    # transactions start; the same pragmas as the per-call connection.
    dbapi_conn.isolation_level = None
    sqlite_pragmas(dbapi_conn)


def _sqlite_begin(conn: Connection) -> None:
    # Take the write lock up front: a reservation's read-check-write must not
    # interleave with another process's.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def open_engine(full: str, url: str, *, echo: bool) -> Engine:
    """The engine for the database at ``full``; ``url`` names it in errors (never the password)."""
    try:
        engine: Engine = create_engine(full, echo=echo)
    except ImportError as exc:
        extra = " (pip install 'paymaster[postgres]')" if full.startswith("postgresql") else ""
        raise ConfigurationError(f"cannot open ledger {url!r}: {exc}{extra}") from None
    except (SQLAlchemyError, ValueError) as exc:
        raise ConfigurationError(f"cannot open ledger {url!r}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


@contextmanager
def write_tx(engine: Engine, url: str) -> Iterator[Connection]:
    """A transaction on ``engine``, committed when the block ends; a database error in it is a LedgerError."""
    try:
        with engine.begin() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise LedgerError(f"ledger write failed ({url}): {exc}") from exc


def create_schema(engine: Engine, url: str) -> None:
    """Create the tables, or add the optional columns and indexes a newer Paymaster has (``Ledger.create_schema``)."""
    try:
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")
                SQLModel.metadata.create_all(conn)
                check_schema(conn, engine, url)
                add_missing_indexes(conn)
        else:
            SQLModel.metadata.create_all(engine)
            with write_tx(engine, url) as conn:
                check_schema(conn, engine, url)
                add_missing_indexes(conn)
    except SQLAlchemyError as exc:
        raise LedgerError(f"cannot create ledger tables in {url!r}: {exc}") from exc


def check_schema(conn: Connection, engine: Engine, url: str, fix: bool = True) -> None:
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
            f"the ledger {url} lacks {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; "
            "create or upgrade its schema once with Ledger(url).create_schema() (safe while workers run)"
        )
    if missing and len(addable) == len(missing):
        # Only new optional columns (e.g. steps.request_id): adding them loses nothing.
        for table_name, column in addable:
            kind = column.type.compile(dialect=engine.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {table_name} ADD COLUMN {column.name} {kind}")
        return
    if missing:
        raise LedgerError(
            f"the ledger {url} was written by an older Paymaster and lacks {', '.join(missing)}; "
            "keep it for reading with the version that wrote it and point this one at a new file "
            "(Runtime(ledger=...) or PAYMASTER_LEDGER)"
        )
