"""Live anomalies: a task costing far more than its agent usually does, a day's spend far above normal, a loop.

Checked at every step from numbers kept in memory; the ledger history they are
compared against is re-read on a worker thread at most every
``refresh_seconds``, started when a task starts or ends, never per step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from .._money import fmt_usd, from_picos
from ..errors import ConfigurationError
from ..executors import Halt
from ..ledger._queries import DAY_SIGMAS, DAY_WINDOW, TASK_FACTOR
from ._history import DAY_SECONDS, History, read_history

if TYPE_CHECKING:
    from ..executors import TaskView
    from ..ledger import Ledger, Totals

AnomalyKind = Literal["task_cost", "day_spend", "runaway"]
# Steps that are no model call (a cache hit reports no output tokens); a loop is counted in model calls.
_NO_CALL = ("tool", "cache_hit")


@dataclass(frozen=True)
class LiveAnomaly:
    """Something unusual seen while a task runs; ``value`` and ``threshold`` are USD (steps for a runaway)."""

    kind: AnomalyKind
    agent: str
    tenant: str
    task_id: str
    value: Decimal
    threshold: Decimal
    message: str


class LiveAnomalies:
    """An observer that flags anomalies as they happen, and with ``on_anomaly="halt"`` stops the task.

    - ``task_cost``: a task's running cost passes 3x the median cost of its
      agent's last ``recent_tasks`` finished tasks (once 5 are known).
    - ``day_spend``: an agent's spend for a tenant today passes the mean + 2
      sigma of the 30 days before (once 7 days are known); fired once per
      agent, tenant and day.
    - ``runaway``: ``runaway_steps`` model calls in a row in one subtask, none
      with a longer reply than the subtask's longest so far (a loop that is not
      getting anywhere).

    Each anomaly goes to ``listener`` (on the event loop: do not block) and to
    ``events``. With ``on_anomaly="halt"`` a ``task_cost`` or ``runaway``
    anomaly also ends the task ``halted``, its stop reason the anomaly's
    message; a day's spend is the sum of many tasks, so it only alerts.
    Place this observer after any tracing observer: a halt stops the step
    from reaching the observers after it.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        on_anomaly: Literal["alert", "halt"] = "alert",
        listener: Callable[[LiveAnomaly], object] | None = None,
        refresh_seconds: float = 60.0,
        recent_tasks: int = 100,
        runaway_steps: int = 8,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if on_anomaly not in ("alert", "halt"):
            raise ConfigurationError(f"on_anomaly is 'alert' or 'halt', got {on_anomaly!r}")
        if refresh_seconds < 0 or recent_tasks < 1 or runaway_steps < 2:
            raise ConfigurationError(
                "refresh_seconds must be >= 0, recent_tasks >= 1 and runaway_steps >= 2; got "
                f"{refresh_seconds}, {recent_tasks} and {runaway_steps}"
            )
        self.ledger = ledger
        self.halt = on_anomaly == "halt"
        self.listener = listener
        self.refresh_seconds = refresh_seconds
        self.recent_tasks = recent_tasks
        self.runaway_steps = runaway_steps
        self.clock = clock
        self.events: list[LiveAnomaly] = []
        self.history = History()
        self.read_error: BaseException | None = None  # why the last background read failed, if it did
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="paymaster-anomalies")
        self._pending: Future[History] | None = None
        self._last_read = float("-inf")  # when the last read began
        self._running: dict[str, tuple[tuple[str, str], int]] = {}  # task id -> (agent, tenant), cost so far
        # Tasks finished since the history was read: (agent, tenant), cost, when it finished.
        self._finished: dict[str, tuple[tuple[str, str], int, float]] = {}
        self._flagged: set[tuple[str, str]] = set()  # (task id, kind) and (agent|tenant, day)
        self._loops: dict[tuple[str, str | None], tuple[int, int]] = {}  # (task, subtask) -> (longest, stale)

    # -- history ----------------------------------------------------------------

    def refresh(self) -> History:
        """Read the history now, blocking this thread (before the runtime starts, or from a worker thread)."""
        self._last_read = self.clock()
        self.history = read_history(self.ledger, self.recent_tasks, self._last_read)
        return self.history

    def _maybe_refresh(self) -> None:
        """Start a background read if the history is older than ``refresh_seconds`` and none is under way."""
        if self._pending is not None and not self._pending.done():
            return
        now = self.clock()
        if now - self._last_read < self.refresh_seconds:
            return
        self._last_read = now
        self._pending = self._pool.submit(read_history, self.ledger, self.recent_tasks, now)
        self._pending.add_done_callback(self._arrived)

    def _arrived(self, read: Future[History]) -> None:
        # On the worker thread: publish the new snapshot by swapping one reference.
        self.read_error = read.exception()
        if self.read_error is None:
            self.history = read.result()

    def close(self) -> None:
        """Stop the background reader (waiting for a read under way)."""
        self._pool.shutdown(wait=True)

    # -- the observer -------------------------------------------------------------

    def task_started(self, task: TaskView) -> None:
        """Start tracking a task (and refresh the history if it is due)."""
        self._running[task.task_id] = ((task.agent, task.tenant), 0)
        self._maybe_refresh()

    def step_recorded(self, task: TaskView, step: Mapping[str, Any], totals: Totals) -> None:
        """Check the task's running cost, its agent's day and the step's subtask for a loop."""
        self._running[task.task_id] = ((task.agent, task.tenant), totals.cost_picos)
        found = [a for a in (self._task_cost(task, totals), self._runaway(task, step), self._day(task)) if a]
        for anomaly in found:
            self.events.append(anomaly)
            if self.listener is not None:
                self.listener(anomaly)
        for anomaly in found:
            if self.halt and anomaly.kind != "day_spend":
                raise Halt(f"anomaly: {anomaly.message}")

    def task_finished(self, task: TaskView, status: str, stop_reason: str | None, totals: Totals) -> None:
        """Stop tracking a task; its cost counts toward today's spend until the next history read has it."""
        self._running.pop(task.task_id, None)
        for key in [k for k in self._loops if k[0] == task.task_id]:
            del self._loops[key]
        self._flagged -= {(task.task_id, "task_cost"), (task.task_id, "runaway")}
        read_at = self.history.read_at
        self._finished = {k: v for k, v in self._finished.items() if v[2] >= read_at}
        self._finished[task.task_id] = ((task.agent, task.tenant), totals.cost_picos, self.clock())
        self._maybe_refresh()

    # -- the checks ---------------------------------------------------------------

    def _once(self, key: tuple[str, str]) -> bool:
        if key in self._flagged:
            return False
        self._flagged.add(key)
        return True

    def _task_cost(self, task: TaskView, totals: Totals) -> LiveAnomaly | None:
        median = self.history.medians.get(task.agent)
        if not median or totals.cost_picos <= TASK_FACTOR * median or not self._once((task.task_id, "task_cost")):
            return None
        cost, mid = from_picos(totals.cost_picos), from_picos(int(median))
        return LiveAnomaly(
            "task_cost", task.agent, task.tenant, task.task_id, cost, TASK_FACTOR * mid,
            f"task {task.task_id} has cost {fmt_usd(cost)} so far, over {TASK_FACTOR}x the median "
            f"{fmt_usd(mid)} of agent {task.agent!r}'s recent tasks",
        )

    def _runaway(self, task: TaskView, step: Mapping[str, Any]) -> LiveAnomaly | None:
        if step.get("kind") in _NO_CALL or step.get("status", "ok") != "ok":
            return None
        key = (task.task_id, step.get("subtask_id"))
        longest, stale = self._loops.get(key, (-1, 0))
        output = int(step.get("output_tokens") or 0)
        longest, stale = (output, 0) if output > longest else (longest, stale + 1)
        self._loops[key] = (longest, stale)
        if stale < self.runaway_steps or not self._once((task.task_id, "runaway")):
            return None
        where = f"subtask {key[1]!r}" if key[1] is not None else "the task"
        return LiveAnomaly(
            "runaway", task.agent, task.tenant, task.task_id, Decimal(stale), Decimal(self.runaway_steps),
            f"runaway loop in task {task.task_id}: {stale} model calls in a row in {where} without a longer "
            f"reply than its longest ({longest} output tokens)",
        )

    def _day(self, task: TaskView) -> LiveAnomaly | None:
        history = self.history
        today = int(self.clock() // DAY_SECONDS)
        key = (task.agent, task.tenant)
        limit = history.day_limits.get(key)
        if limit is None or history.day != today:
            return None  # no judgement without a week of history, or until the new day's history is read
        spend = history.today.get(key, 0)
        spend += sum(cost for k, cost in self._running.values() if k == key)
        # Tasks finished after the read began may be in it too: counting them twice errs toward alerting.
        spend += sum(cost for k, cost, when in self._finished.values() if k == key and when >= history.read_at)
        if spend <= limit or not self._once((f"{task.agent}|{task.tenant}", str(today))):
            return None
        usd, threshold = from_picos(spend), from_picos(int(limit))
        return LiveAnomaly(
            "day_spend", task.agent, task.tenant, task.task_id, usd, threshold,
            f"agent {task.agent!r} has spent {fmt_usd(usd)} for tenant {task.tenant!r} today, over the mean + "
            f"{DAY_SIGMAS} sigma ({fmt_usd(threshold)}) of the {DAY_WINDOW} days before",
        )
