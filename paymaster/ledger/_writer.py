"""The ledger writer: one thread owns the write connection and commits queued work in groups.

The event loop never waits on the database: a call hands the writer a small
function of a transaction and gets a future. The writer takes every function
queued so far, runs each inside its own savepoint of one transaction (so one
refusal or failure rolls back only its own statements) and commits once, then
resolves the futures. A future resolves only after its work is committed, so a
reservation is durable before its call is sent; callers that need no answer
(settlements, step rows) do not wait at all, and a crash before their group
commits leaves the reservation, which recovery closes at its worst case.

On SQLite, work queued from an event loop is first tried in place, on a second
connection that never waits: its ``BEGIN IMMEDIATE`` fails at once if another
connection holds the write lock (busy timeout 0), and it never checkpoints
(the writer thread does that). A free database takes a few tens of
microseconds per group that way, with no thread hand-off; a locked, busy or
slow one sends the group to the writer thread, so the loop never waits on it.
Work from one loop runs in the order it was queued either way: a group goes in
place only when the writer thread has nothing queued or running.

On PostgreSQL every unit names the shared accounts it will lock, and its group
locks them all first, in the one order every writer uses (see ``_group``, which runs
a group's transaction). Units that find their rows as they go (recovery) run in
a group of their own.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import sqlite3
import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..errors import LedgerError

# Cursor, Tx, in_list, lock_accounts and sqlite_pragmas are imported from here by the ledger's other modules.
from ._group import Cursor as Cursor
from ._group import RunAgain as RunAgain
from ._group import Tx as Tx
from ._group import _Work, run_group
from ._group import in_list as in_list
from ._group import in_members as in_members
from ._group import lock_accounts as lock_accounts
from ._group import sqlite_pragmas as sqlite_pragmas
from ._pending import Pending as Pending
from ._pending import wait as wait

T = TypeVar("T")
MAX_GROUP = 512  # statements' worth of work per commit; bounds how long one transaction holds the lock
FLUSH_DELAY_SECONDS = 0.001  # how long queued, unawaited work may wait to share a commit
INLINE_MAX = 32  # units of work a group may have to be run in place, on the caller's thread
CHECKPOINT_EVERY = 500  # in-place commits between checkpoints run by the writer thread
_CHECKPOINT = _Work(lambda tx: None)  # a marker: the writer thread checkpoints the WAL


class Writer:
    """A thread that runs transactions for the ledger, grouping whatever is queued into one commit."""

    def __init__(
        self, connect: Callable[[], Any], *, sqlite: bool, where: str, connect_inline: Callable[[], Any] | None = None
    ) -> None:
        self._connect = connect
        self._inline_conn: Any = connect_inline() if connect_inline is not None else None
        self._inline_lock = threading.Lock()
        self._inline_commits = 0
        self._later: list[_Work] = []
        self._later_thread: int | None = None  # the one thread whose event loop buffers work in _later
        self._flush_loop: asyncio.AbstractEventLoop | None = None  # the loop that will flush _later
        self._last: Pending[Any] | None = None  # the work queued last
        self._active = False
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
        # Work still buffered when the interpreter exits (a task's closing row, queued without waiting)
        # is committed then, not dropped with the daemon thread.
        atexit.register(_close_at_exit, weakref.ref(self))

    # -- submitting work -------------------------------------------------------------

    def submit(
        self,
        fn: Callable[[Tx], T],
        *,
        may_abort: bool = False,
        locks: Sequence[str] = (),
        alone: bool = False,
        awaited: bool = False,
    ) -> Pending[T]:
        """Queue ``fn`` to run in the next group transaction; the future resolves once it is committed.

        ``may_abort``: ``fn`` may call ``tx.abort()`` to undo its own statements (it gets a savepoint).
        ``locks``: the accounts ``fn`` updates, locked up front with the rest of its group's (PostgreSQL).
        ``alone``: ``fn`` takes row locks in an order of its own, so it runs in a transaction by itself.
        ``awaited``: the caller waits for the result, so this loop's queued work runs at once, not
        after the moment's delay that groups unawaited work.
        """
        future = self._submit(_Work(fn, may_abort, locks, alone))
        if awaited and self.has_buffered():
            self.flush()
        return future

    def _submit(self, work: _Work) -> Pending[Any]:
        self._last = work.future  # groups commit in order: once this is done, so is all queued before it
        if self._inline_conn is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None and self._later_thread in (None, threading.get_ident()):
                # Grouped with whatever else this loop queues before it next idles. One thread owns
                # the buffer: work from any other thread goes straight to the writer's queue.
                self._later_thread = threading.get_ident()
                self._later.append(work)
                if self._flush_loop is not loop:
                    # A moment's delay groups this with more work (the rest of this task's steps, other
                    # tasks' calls) into one commit; anything awaited flushes at once. A flush scheduled
                    # on a loop that has since ended never runs: this loop schedules its own.
                    self._flush_loop = loop
                    loop.call_later(FLUSH_DELAY_SECONDS, self.flush)
                return work.future
        self._enqueue([work])
        return work.future

    def call(
        self, fn: Callable[[Tx], T], *, may_abort: bool = False, locks: Sequence[str] = (), alone: bool = False
    ) -> T:
        """Run ``fn`` in a committed transaction and return its result (blocks the calling thread)."""
        if threading.current_thread() is self._thread:
            raise LedgerError("ledger work submitted from the ledger's own writer thread")
        work = _Work(fn, may_abort, locks, alone)
        group = [work]
        if self._later_thread == threading.get_ident():  # this thread's buffered work goes first
            group, self._later = [*self._later, work], []
        self._place(group)
        result: T = work.future.result()
        return result

    async def run(
        self, fn: Callable[[Tx], T], *, may_abort: bool = False, locks: Sequence[str] = (), alone: bool = False
    ) -> T:
        """Run ``fn`` in a committed transaction without blocking the event loop."""
        return await wait(self.submit(fn, may_abort=may_abort, locks=locks, alone=alone, awaited=True))

    def has_buffered(self) -> bool:
        """Whether this thread's event loop has queued work not yet run."""
        return bool(self._later) and self._later_thread == threading.get_ident()

    def flush(self) -> None:
        """Run what this loop has queued: in place if the database is free, else on the writer thread."""
        self._flush_loop = None
        group, self._later = self._later, []
        if group:
            self._place(group)

    def settle(self) -> None:
        """Return once the work queued so far is committed (blocks this thread)."""
        if threading.current_thread() is self._thread:
            return
        if self.has_buffered():
            self.flush()
        last = self._last
        if last is None or last.done() or any(w.future is last for w in self._later):
            return  # nothing in flight, or it waits in another thread's loop, which flushes it
        last.exception()  # waits; a failure was reported to whoever queued the work

    def _place(self, group: list[_Work]) -> None:
        # In place only when the group is small: a big one (a burst of settlements) would hold the
        # event loop for its whole transaction; the writer thread runs it while the loop goes on.
        if self._inline_conn is not None and len(group) <= INLINE_MAX and self._inline_lock.acquire(blocking=False):
            try:
                with self._ready:
                    idle = not self._queue and not self._active
                if idle and self._try_inline(group):
                    return
            finally:
                self._inline_lock.release()
        self._enqueue(group)

    def _try_inline(self, group: list[_Work]) -> bool:
        conn: Any = self._inline_conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return False  # another connection holds the write lock: the writer thread will wait for it
        run_group(conn, group, sqlite=True, where=self._where, begun=True)
        self._inline_commits += 1
        if self._inline_commits % CHECKPOINT_EVERY == 0:
            self._enqueue([_CHECKPOINT])
        return True

    def _enqueue(self, group: list[_Work]) -> None:
        with self._ready:
            if self._conn is None:
                failure = LedgerError(f"the ledger {self._where} is closed")
                for work in group:
                    work.future.set_exception(failure)
                return
            self._queue.extend(group)
            self._ready.notify()

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
                closing = checkpoint = False
                while self._queue and len(group) < MAX_GROUP:
                    item = self._queue.popleft()
                    if item is None:
                        closing = True
                        break
                    if item is _CHECKPOINT:
                        checkpoint = True
                        continue
                    if item.alone and not self._sqlite:
                        if group:
                            self._queue.appendleft(item)  # the next group, by itself
                        else:
                            group.append(item)
                        break
                    group.append(item)
                self._active = True
            try:
                if group:
                    run_group(self._conn, group, sqlite=self._sqlite, where=self._where)
                if checkpoint:
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception:
                pass
            finally:
                with self._ready:
                    self._active = False
            if getattr(self._conn, "broken", False) or getattr(self._conn, "closed", False) is True:
                # The server restarted or the network dropped: the failed group was reported; the next
                # one gets a new connection (psycopg marks a lost connection broken).
                with contextlib.suppress(Exception):  # still unreachable: the next group reports the error
                    self._conn = self._connect()
            if closing:
                with self._ready:
                    conn, self._conn = self._conn, None
                conn.close()
                return

    def close(self) -> None:
        """Finish the queued work, then stop the thread and close the connections."""
        self.flush()
        if self._inline_conn is not None:
            with self._inline_lock:
                self._inline_conn.close()
                self._inline_conn = None
        with self._ready:
            if self._conn is None or not self._thread.is_alive():
                return
            self._queue.append(None)
            self._ready.notify()
        self._thread.join()


def _close_at_exit(ref: weakref.ref[Writer]) -> None:
    writer = ref()
    if writer is not None:
        with contextlib.suppress(Exception):  # a ledger already gone: nothing left to write
            writer.close()
