"""Checks on a SQLite ledger's path before it is opened, so a mistake reads as one clear line.

SQLite's own messages ("unable to open database file", "file is not a database")
do not say which of several things went wrong, and opening a mistyped path
silently creates an empty ledger. Other databases (PostgreSQL) are not checked here.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..errors import ConfigurationError, LedgerError

_SQLITE_MAGIC = b"SQLite format 3\x00"
_WHERE = "pass another with --ledger, PAYMASTER_LEDGER or Runtime(ledger=...)"


def sqlite_path(url: str) -> Path | None:
    """The file a ``sqlite://`` URL names; None for other databases, in-memory and URI-style ones."""
    # SQLAlchemy only here: the reading commands check plain paths with check_sqlite_file and start faster.
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return None  # the engine reports a malformed URL itself
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:") or parsed.query.get("uri"):
        return None
    return Path(database)


def check_ledger_path(url: str, *, must_exist: bool = False) -> None:
    """Raise a one-line error when a SQLite ledger cannot be opened (or, with ``must_exist``, is absent).

    ``must_exist`` is for read-only commands: they never create a database.
    """
    path = sqlite_path(url)
    if path is not None:
        check_sqlite_file(path, must_exist=must_exist)


def check_sqlite_file(path: Path, *, must_exist: bool = False) -> None:
    """The checks of :func:`check_ledger_path` on a SQLite file path."""
    if path.is_dir():
        raise ConfigurationError(f"the ledger path {path} is a directory, not a ledger file; {_WHERE}")
    if not path.exists():
        parent = path.parent
        if not parent.is_dir():
            raise ConfigurationError(
                f"cannot open ledger {path}: the directory {parent} does not exist (create it, or {_WHERE})"
            )
        if must_exist:
            raise ConfigurationError(f"no ledger at {path}: the file does not exist (check the path, or {_WHERE})")
        return
    with path.open("rb") as fh:
        head = fh.read(len(_SQLITE_MAGIC))
    if head and head != _SQLITE_MAGIC:  # an empty file is a new SQLite database
        raise LedgerError(f"{path} is not a Paymaster ledger: it is not a SQLite database")
    if must_exist and not _has_task_table(path):
        raise LedgerError(f"{path} is not a Paymaster ledger: it has no tasks table")


def _has_task_table(path: Path) -> bool:
    # Read-only, so looking cannot change the file.
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tasks'"
        ).fetchone()
    except sqlite3.DatabaseError:
        return False
    finally:
        conn.close()
    return found is not None
