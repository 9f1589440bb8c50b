"""A group transaction: queued units of ledger work run in one transaction, each able to fail alone.

``run_group`` runs a group of units (functions of a ``Tx``) in one transaction
and commits once, then resolves each unit's future. A unit that may abort (a
refused reservation) runs in a savepoint of its own, so one refusal or failure
rolls back only its own statements and undoes its in-memory changes; the rest
of the group is kept.

On PostgreSQL a group's transaction holds row locks until it commits, and the
units of one group touch different accounts. So that two writers (two
processes, two hosts) can never wait for each other in a cycle, every unit
names the shared accounts it will lock, and the group locks all of them first,
in one statement, in one order (byte order of the id) shared by every writer
(``lock_accounts``); a task's own account is written by its worker alone, so it
is not locked first. Should a deadlock happen anyway (accounts created by two
writers at once, or a paused worker's rows recovered by another), the server
breaks it and the group runs again, up to ``RETRIES`` times.

The statements are written with ``:name`` parameters and translated for
drivers that use ``%(name)s`` (``in_list`` builds an ``IN (...)`` list of them).
``sqlite_pragmas`` sets up every SQLite connection of the ledger.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Protocol

from ..errors import LedgerError
from ._pending import Pending

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
RETRIES = 5  # runs of a group that the server aborted to break a deadlock or a serialization conflict
_RETRYABLE = frozenset({"40P01", "40001"})  # PostgreSQL: deadlock detected, serialization failure


class Cursor(Protocol):
    """What the per-call path needs of a cursor."""

    @property
    def rowcount(self) -> int: ...

    def fetchall(self) -> Sequence[Any]: ...


@lru_cache(maxsize=512)
def _pyformat(sql: str) -> str:
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))


class Tx:
    """One unit of work inside a group transaction; ``abort()`` rolls back just this unit."""

    def __init__(self, cursor: Any, pyformat: bool) -> None:
        self._cursor = cursor
        self._pyformat = pyformat
        self.sqlite = not pyformat  # SQLite serialises writers itself; a server needs row locks
        # A server's first try at a group, without a savepoint per unit: a unit may take its one-statement
        # path and raise RunAgain when that cannot finish (the group then runs again, with savepoints).
        self.fast = False
        self.aborted = False
        self.undo: list[Callable[[], None]] = []

    def on_undo(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` if this unit's statements are rolled back (to undo in-memory state it changed)."""
        self.undo.append(fn)

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Cursor:
        """Run one statement with ``:name`` parameters."""
        self._cursor.execute(_pyformat(sql) if self._pyformat else sql, dict(params or {}))
        result: Cursor = self._cursor
        return result

    def abort(self) -> None:
        """Undo this unit's statements when it ends (a refused reservation)."""
        self.aborted = True

    def execute_together(self, statements: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        """Run statements whose results nobody reads; on a server as one (data-modifying ``WITH``), one round trip.

        Their parameter names must differ, and no two may change the same row: the parts of one
        statement do not see each other's changes.
        """
        if self.sqlite or len(statements) < 2:
            for sql, params in statements:
                self.execute(sql, params)
            return
        merged: dict[str, Any] = {}
        for _, params in statements:
            if merged.keys() & params.keys():
                raise LedgerError(f"statements run together share parameter names {sorted(merged.keys() & params)}")
            merged.update(params)
        self.execute(_together(tuple(sql for sql, _ in statements)), merged)


class RunAgain(Exception):
    """A unit's one-statement path could not finish (a refusal, a lease gone): run the group with savepoints."""


@lru_cache(maxsize=64)
def _together(statements: tuple[str, ...]) -> str:
    *first, last = statements
    return "WITH " + ", ".join(f"s{i} AS ({sql})" for i, sql in enumerate(first)) + " " + last


def in_list(prefix: str, values: Sequence[str]) -> tuple[str, dict[str, str]]:
    """An ``IN (...)`` list of named parameters for ``values``, and the parameters."""
    members, names = _in_names(prefix, len(values))
    return members, dict(zip(names, values, strict=True))


def in_members(prefix: str, n: int) -> str:
    """The ``IN (...)`` list that ``in_list`` builds for ``n`` values, without the values (to cache SQL by shape)."""
    return _in_names(prefix, n)[0]


@lru_cache(maxsize=256)  # a few prefixes and list lengths recur on every call
def _in_names(prefix: str, n: int) -> tuple[str, tuple[str, ...]]:
    names = tuple(f"{prefix}{i}" for i in range(n))
    return "(" + ", ".join(f":{name}" for name in names) + ")", names


def sqlite_pragmas(conn: Any) -> None:
    """WAL so readers run beside the one writer; NORMAL sync is durable against a process crash."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")


def database_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a DB-API error (from sqlite3 or a server's driver), to be reported as a LedgerError."""
    return isinstance(exc, sqlite3.Error) or any(
        c.__name__ == "Error" and c.__module__.startswith("psycopg") for c in type(exc).__mro__
    )


def _retryable(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) in _RETRYABLE


class _Work:
    __slots__ = ("alone", "fn", "future", "locks", "own_savepoint")

    def __init__(
        self, fn: Callable[[Tx], Any], own_savepoint: bool = False, locks: Sequence[str] = (), alone: bool = False
    ) -> None:
        self.fn = fn
        self.future: Pending[Any] = Pending()
        self.own_savepoint = own_savepoint
        self.locks = locks
        self.alone = alone



def run_group(conn: Any, group: Sequence[_Work], *, sqlite: bool, where: str, begun: bool = False) -> None:
    """Run ``group`` in one transaction, commit, then resolve the futures.

    A unit that may abort (a refused reservation) runs in a savepoint of its own.
    If any other unit fails, the transaction is rolled back and the group run
    again with a savepoint per unit, so that only the failing unit is lost.
    """
    cur = conn.cursor()
    try:
        for attempt in range(RETRIES):
            try:
                results = _attempt(conn, cur, group, sqlite=sqlite, begun=begun and attempt == 0, every_unit=False)
                if results is None:
                    results = _attempt(conn, cur, group, sqlite=sqlite, begun=False, every_unit=True)
                break
            except Exception as exc:
                if sqlite or not _retryable(exc) or attempt == RETRIES - 1:
                    raise
                conn.rollback()  # the server chose this transaction to break a deadlock: run it again
        assert results is not None
    except Exception as exc:
        try:
            if sqlite:
                conn.execute("ROLLBACK")
            else:
                conn.rollback()
        except Exception:  # the original error is the one to report
            pass
        failure = LedgerError(f"ledger write failed ({where}): {exc}")
        for work in group:
            _resolve(work.future, None, failure)
        return
    finally:
        cur.close()
    for work, value, error in results:
        if error is not None and database_error(error):
            error = LedgerError(f"ledger write failed ({where}): {error}")
        _resolve(work.future, value, error)


def _resolve(future: Pending[Any], value: Any, error: BaseException | None) -> None:
    """Settle a unit's future; one that was cancelled meanwhile must not stop the rest of its group."""
    if future.done():
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)


def _attempt(
    conn: Any, cur: Any, group: Sequence[_Work], *, sqlite: bool, begun: bool, every_unit: bool
) -> list[tuple[_Work, Any, BaseException | None]] | None:
    """One try at the group; None when a unit without a savepoint failed (the caller retries with them)."""
    results: list[tuple[_Work, Any, BaseException | None]] = []
    if sqlite and not begun:
        cur.execute("BEGIN IMMEDIATE")  # take the write lock up front: no deadlock on upgrade
    tx = Tx(cur, pyformat=not sqlite)
    tx.fast = not sqlite and not every_unit
    undo: list[Callable[[], None]] = []  # in-memory changes of the units kept so far
    try:
        lock_accounts(tx, [a for work in group for a in work.locks])
        for work in group:
            # On a server, a unit that may abort runs without a savepoint of its own at first: most do not,
            # and two round trips per unit are saved; if one does, the group runs again with a savepoint per
            # unit. SQLite keeps its savepoints (they cost no round trip), and with them its write lock.
            savepoint = every_unit or (sqlite and work.own_savepoint)
            if savepoint:
                cur.execute("SAVEPOINT unit")
            tx.aborted = False
            tx.undo = []
            try:
                value = work.fn(tx)
            except BaseException as exc:
                _run_undo(tx.undo)
                if not sqlite and _retryable(exc):
                    raise  # the whole transaction is lost: the caller runs the group again
                if not savepoint:
                    _abandon(conn, cur, sqlite, undo)
                    return None
                cur.execute("ROLLBACK TO SAVEPOINT unit")
                cur.execute("RELEASE SAVEPOINT unit")
                results.append((work, None, exc))
                continue
            if tx.aborted:
                _run_undo(tx.undo)
                if not savepoint:
                    _abandon(conn, cur, sqlite, undo)
                    return None
                cur.execute("ROLLBACK TO SAVEPOINT unit")
            else:
                undo.extend(tx.undo)
            if savepoint:
                cur.execute("RELEASE SAVEPOINT unit")
            results.append((work, value, None))
        if sqlite:
            cur.execute("COMMIT")
        else:
            conn.commit()
    except BaseException:
        _run_undo(undo)  # the transaction is lost: so are the in-memory changes of its units
        raise
    return results


def _abandon(conn: Any, cur: Any, sqlite: bool, undo: list[Callable[[], None]]) -> None:
    """Roll the whole transaction back (a unit without a savepoint failed): the caller runs it again."""
    if sqlite:
        cur.execute("ROLLBACK")
    else:
        conn.rollback()
    _run_undo(undo)


def _run_undo(undo: list[Callable[[], None]]) -> None:
    for fn in reversed(undo):
        fn()
    undo.clear()


def lock_accounts(tx: Tx, accounts: Sequence[str]) -> None:
    """Lock these account rows (PostgreSQL), in the one order every writer uses: byte order of the id."""
    if not accounts or tx.sqlite:  # SQLite: the transaction holds the one write lock already
        return
    members, params = in_list("l", sorted(set(accounts)))
    tx.execute(f'SELECT id FROM accounts WHERE id IN {members} ORDER BY id COLLATE "C" FOR UPDATE', params)
