"""The lean per-task path of a ledger: task rows and steps queued on the writer, never waited for on the loop.

A task's rows (its opening row with the accounts it needs, updates, steps
without a reservation, its closing row) are handed to the ledger's writer and
share its commits; a write that fails is remembered against its task and
reported when the task finishes (``afinish_task`` raises it), or logged if the
closing row itself is lost. ``flush`` and ``aflush`` wait for what was queued.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, TypeVar

from ..errors import LedgerError
from ._accounts import Accounts, Caps, ensure_statements, insert_step, shared_locks
from ._sql import SqlRunner, Tx
from ._tasks import Totals, check_task_columns, insert_task_statement, update_task_tx
from ._writer import Pending

T = TypeVar("T")
_log = logging.getLogger("paymaster.ledger")
_UNSET = object()


class QueuedWrites:
    """The lean per-task path (used by the runtime; never blocks the event loop): ``Ledger`` inherits it."""

    # Set by Ledger.__init__.
    sql: SqlRunner
    accounts: Accounts
    worker_id: str
    _ensured: dict[str, object]
    _failures: dict[str, BaseException]
    _unwritten: dict[str, tuple[dict[str, Any], Pending[None]]]  # task rows queued, not yet inserted
    _unwritten_lock: threading.Lock

    def open_task_later(self, record: Mapping[str, Any], accounts: Mapping[str, Caps | None]) -> Pending[None]:
        """Queue a new task row and the accounts it needs; later work on the task is queued behind it."""
        # Shared accounts need creating (or their caps setting) once per process, not once per task.
        fresh = {a: c for a, c in accounts.items() if self._ensured.get(a, _UNSET) != c}
        self._ensured.update(fresh)
        if fresh and self.accounts.leases is not None:
            self.accounts.leases.expire(fresh)  # caps set anew here: slices cut under the old ones take no more

        row = {**record, "owner": self.worker_id}  # the worker whose heartbeat vouches for the task
        task_id = str(record["id"])

        def work(tx: Tx) -> None:
            with self._unwritten_lock:  # from here on, changes to the row are statements of their own
                self._unwritten.pop(task_id, None)
                values = dict(row)
            tx.execute_together([insert_task_statement(values), *ensure_statements(fresh)])

        future = self.sql.submit(work, locks=shared_locks(fresh))
        with self._unwritten_lock:
            self._unwritten[task_id] = (row, future)
        return self.watch(task_id, future)

    def update_task_later(self, task_id: str, **values: Any) -> Pending[None]:
        """Queue an update of a task row (its plan, its status while it waits for approval)."""
        check_task_columns(values)
        with self._unwritten_lock:
            unwritten = self._unwritten.get(task_id)
            if unwritten is not None:  # its insert has not run yet: it takes the values (one statement less)
                unwritten[0].update(values)
                return unwritten[1]
        return self.watch(task_id, self.sql.submit(lambda tx: update_task_tx(tx, task_id, values)))

    def record_step_later(self, step: Mapping[str, Any]) -> Pending[None]:
        """Queue a step that holds no reservation (a refusal, a free tool call, a cache hit)."""
        row = dict(step)
        return self.watch(str(row["task_id"]), self.sql.submit(lambda tx: insert_step(tx, row)))

    def watch(self, task_id: str, future: Pending[T]) -> Pending[T]:
        """Remember a queued write's failure against its task, to report when the task finishes."""

        def check(done: Pending[T]) -> None:
            error = done.exception()
            if error is not None:
                self._failures.setdefault(task_id, error)

        future.add_done_callback(check)
        return future

    async def afinish_task(self, task_id: str, totals: Totals, **values: Any) -> None:
        """Queue a task's closing row (status, outcome, totals); raises if an earlier write of it was lost.

        The row is not awaited: it shares the next commit (the next call's
        reservation, or the moment's flush), as a settlement may. A crash before
        it is written leaves the task open and its holds in place; recovery then
        closes both at their worst case, so spend is never under-counted.
        ``flush`` or a read through this ledger waits for it.
        """
        row = {**values, **totals.as_row(), "finished_at": time.time()}
        closing = self.sql.submit(lambda tx: update_task_tx(tx, task_id, row))

        def check(done: Pending[None]) -> None:
            # Nobody awaits the closing row: a failure to write it (or an earlier write still queued
            # with it) is reported in the log, and recovery closes the task at its worst case.
            error = done.exception() or self._failures.pop(task_id, None)
            if error is not None:
                _log.error("the ledger lost the closing write of task %s: %s", task_id, error)

        closing.add_done_callback(check)
        failure = self._failures.pop(task_id, None)
        if failure is not None:
            raise LedgerError(f"the ledger lost a write of task {task_id}: {failure}") from failure

    async def aflush(self) -> None:
        """``flush`` for the event loop that queued the writes, without blocking it."""
        await self.sql.run(lambda tx: None)

    def flush(self) -> None:
        """Return once the writes this thread queued without waiting (closing rows, settlements) are committed."""
        self.sql.settle()
