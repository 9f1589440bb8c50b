"""The ledger writer: one thread owns the write connection and commits queued work in groups.

The event loop never waits on the database: a call hands the writer a small
function of a transaction and gets a future. The writer takes every function
queued so far, runs each inside its own savepoint of one transaction (so one
refusal or failure rolls back only its own statements) and commits once, then
resolves the futures. A future resolves only after its work is committed, so a
reservation is durable before its call is sent; callers that need no answer
(settlements, step rows) do not wait at all, and a crash before their group
commits leaves the reservation, which recovery closes at its worst case.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from functools import lru_cache
from typing import Any, Protocol, TypeVar

import anyio

from ..errors import LedgerError

T = TypeVar("T")
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
MAX_GROUP = 512  # statements' worth of work per commit; bounds how long one transaction holds the lock


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
        self.aborted = False

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Cursor:
        """Run one statement with ``:name`` parameters."""
        self._cursor.execute(_pyformat(sql) if self._pyformat else sql, dict(params or {}))
        result: Cursor = self._cursor
        return result

    def abort(self) -> None:
        """Undo this unit's statements when it ends (a refused reservation)."""
        self.aborted = True


def in_list(prefix: str, values: Sequence[str]) -> tuple[str, dict[str, str]]:
    """An ``IN (...)`` list of named parameters for ``values``, and the parameters."""
    names = [f"{prefix}{i}" for i in range(len(values))]
    return "(" + ", ".join(f":{n}" for n in names) + ")", dict(zip(names, values, strict=True))


def sqlite_pragmas(conn: Any) -> None:
    """WAL so readers run beside the one writer; NORMAL sync is durable against a process crash."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")


class _Work:
    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[Tx], Any]) -> None:
        self.fn = fn
        self.future: Future[Any] = Future()


class Writer:
    """A thread that runs transactions for the ledger, grouping whatever is queued into one commit."""

    def __init__(self, connect: Callable[[], Any], *, sqlite: bool, where: str) -> None:
        self._connect = connect
        self._sqlite = sqlite
        self._where = where
        self._queue: deque[_Work | None] = deque()
        self._ready = threading.Condition()
        self._conn: Any = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="paymaster-ledger-writer", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise LedgerError(f"cannot open the ledger {where} for writing: {self._error}") from self._error

    # -- submitting work -------------------------------------------------------------

    def submit(self, fn: Callable[[Tx], T]) -> Future[T]:
        """Queue ``fn`` to run in the next group transaction; the future resolves once it is committed."""
        work = _Work(fn)
        with self._ready:
            if self._conn is None:
                raise LedgerError(f"the ledger {self._where} is closed")
            self._queue.append(work)
            self._ready.notify()
        return work.future

    def call(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in a committed transaction and return its result (blocks the calling thread)."""
        if threading.current_thread() is self._thread:
            raise LedgerError("ledger work submitted from the ledger's own writer thread")
        return self.submit(fn).result()

    async def run(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in a committed transaction without blocking the event loop."""
        return await wait(self.submit(fn))

    # -- the thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._conn = self._connect()
        except BaseException as exc:  # reported to the constructor
            self._error = exc
            self._started.set()
            return
        self._started.set()
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
                group: list[_Work] = []
                closing = False
                while self._queue and len(group) < MAX_GROUP:
                    item = self._queue.popleft()
                    if item is None:
                        closing = True
                        break
                    group.append(item)
            if group:
                self._commit(group)
            if closing:
                with self._ready:
                    conn, self._conn = self._conn, None
                conn.close()
                return

    def _commit(self, group: list[_Work]) -> None:
        cur = self._conn.cursor()
        results: list[tuple[_Work, Any, BaseException | None]] = []
        try:
            if self._sqlite:
                cur.execute("BEGIN IMMEDIATE")  # take the write lock up front: no deadlock on upgrade
            tx = Tx(cur, pyformat=not self._sqlite)
            for work in group:
                cur.execute("SAVEPOINT unit")
                tx.aborted = False
                try:
                    value = work.fn(tx)
                except BaseException as exc:
                    cur.execute("ROLLBACK TO SAVEPOINT unit")
                    cur.execute("RELEASE SAVEPOINT unit")
                    results.append((work, None, exc))
                    continue
                if tx.aborted:
                    cur.execute("ROLLBACK TO SAVEPOINT unit")
                cur.execute("RELEASE SAVEPOINT unit")
                results.append((work, value, None))
            if self._sqlite:
                cur.execute("COMMIT")
            else:
                self._conn.commit()
        except Exception as exc:
            try:
                if self._sqlite:
                    self._conn.execute("ROLLBACK")
                else:
                    self._conn.rollback()
            except Exception:  # the original error is the one to report
                pass
            failure = LedgerError(f"ledger write failed ({self._where}): {exc}")
            for work in group:
                work.future.set_exception(failure)
            return
        finally:
            cur.close()
        for work, value, error in results:
            if error is None:
                work.future.set_result(value)
            elif isinstance(error, LedgerError | sqlite3.Error) or not isinstance(error, Exception):
                work.future.set_exception(
                    error if isinstance(error, LedgerError) else LedgerError(f"ledger write failed: {error}")
                )
            else:
                work.future.set_exception(error)

    def close(self) -> None:
        """Finish the queued work, then stop the thread and close the connection."""
        with self._ready:
            if self._conn is None or not self._thread.is_alive():
                return
            self._queue.append(None)
            self._ready.notify()
        self._thread.join()


async def wait(future: Future[T]) -> T:
    """Await a writer future from async code, without blocking the event loop."""
    if future.done():
        return future.result()
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # another event loop (trio): a worker thread waits instead
        return await anyio.to_thread.run_sync(future.result)
    return await asyncio.wrap_future(future)
