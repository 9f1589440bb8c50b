"""Surge alerts: a change of model or agent version after which an agent's cost per task jumped.

The rule is the report's (``paymaster report``, "Surges"; see ``paymaster.ledger._economics``):
cost per task since the previous change against cost per task after it, over a
factor (default 1.5x), with at least 3 priced tasks each side. It is judged on
finished tasks, so the check runs when tasks finish: on a worker thread, for the
agents whose tasks finished since the last check, at most every
``refresh_seconds``. Alerts reach the listener on the event loop, at the next
task start or end after the check, once per agent and change.

With ``raise_caps``, an alert also raises the agent's task caps for a while
(a ``cap_raises`` ledger row, applied by every runtime on the ledger and
listed by ``paymaster report``): by the surge's ratio, at most the configured
factor (itself at most 3x), for at most a day, so that tasks keep finishing
while someone looks into the change, and no raise outlives that look.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

from .._money import fmt_usd
from ..errors import ConfigurationError
from ..ledger._economics import SURGE_FACTOR, Surge, surges
from ..ledger._queries import Scope
from ..ledger._raises import CapRaise, record_raise_tx
from ..ledger._reader import Reader

if TYPE_CHECKING:
    from ..executors import TaskView
    from ..ledger import Ledger, Totals

DEFAULT_WINDOW = 30 * 86_400  # judge changes among the last 30 days of tasks
MAX_RAISE_FACTOR = Decimal(3)  # a raise is room to keep working while someone looks, not a new budget
MAX_RAISE_SECONDS = 86_400.0


@dataclass(frozen=True)
class RaiseCaps:
    """On a surge, raise the agent's task caps by the surge's ratio, at most ``factor``, for ``seconds``."""

    factor: Decimal | str = Decimal(2)
    seconds: float = 4 * 3600.0

    def __post_init__(self) -> None:
        try:
            factor = Decimal(self.factor)
        except ArithmeticError:
            factor = Decimal("NaN")
        if not (factor.is_finite() and 1 < factor <= MAX_RAISE_FACTOR):
            raise ConfigurationError(f"RaiseCaps(factor=...) is above 1 and at most {MAX_RAISE_FACTOR}, got "
                                     f"{self.factor!r}")
        if not 0 < self.seconds <= MAX_RAISE_SECONDS:
            raise ConfigurationError(f"RaiseCaps(seconds=...) is above 0 and at most {MAX_RAISE_SECONDS:.0f} (a day), "
                                     f"got {self.seconds!r}")
        object.__setattr__(self, "factor", factor)


@dataclass(frozen=True)
class SurgeAlert:
    """A change after which an agent's cost per task rose past the factor, and the figures that show it.

    ``raised`` is the cap raise the alert recorded, when the alerts were given ``raise_caps``.
    """

    surge: Surge
    message: str
    raised: CapRaise | None = None


def surge_message(s: Surge) -> str:
    """One sentence naming the agent, the change, when, and cost per task before and after."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(s.at))
    return (f"agent {s.agent!r}: cost per task rose {s.ratio:.2f}x (from {fmt_usd(s.before)} over {s.tasks_before} "
            f"tasks to {fmt_usd(s.after)} over {s.tasks_after}) after {s.describe()}, first used by task "
            f"{s.task_id} at {when}")


class SurgeAlerts:
    """An observer that alerts when a change of model or version makes an agent's tasks dearer.

    Pass it to ``Runtime(observers=[...])``. Each alert goes to ``listener`` (on
    the event loop: do not block) and to ``events``; ``check()`` runs the same
    check at once, on the calling thread (for a script or a cron job).
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        factor: Decimal | str = SURGE_FACTOR,
        window_seconds: float = DEFAULT_WINDOW,
        refresh_seconds: float = 60.0,
        listener: Callable[[SurgeAlert], object] | None = None,
        clock: Callable[[], float] = time.time,
        raise_caps: RaiseCaps | None = None,
    ) -> None:
        try:
            self.factor = Decimal(factor)
        except ArithmeticError:
            raise ConfigurationError(f"factor is a number above zero such as \"1.5\", got {factor!r}") from None
        if not self.factor.is_finite() or self.factor <= 0 or window_seconds <= 0 or refresh_seconds < 0:
            raise ConfigurationError(
                "factor and window_seconds must be above zero and refresh_seconds at least zero; got "
                f"{factor}, {window_seconds} and {refresh_seconds}"
            )
        self.ledger = ledger
        self.window_seconds = window_seconds
        self.refresh_seconds = refresh_seconds
        self.listener = listener
        self.clock = clock
        self.raise_caps = raise_caps
        self.events: list[SurgeAlert] = []
        self.read_error: BaseException | None = None  # why the last background check failed, if it did
        self._seen: set[tuple[str, float, str]] = set()  # (agent, when, change): each alerts once
        self._dirty: set[str] = set()  # agents with tasks finished since the last check began
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="paymaster-surges")
        self._pending: Future[list[Surge]] | None = None
        self._last = float("-inf")
        self._closed = False

    def check(self, agents: Iterable[str] | None = None) -> list[SurgeAlert]:
        """Judge ``agents`` (all of them when None) now, on this thread; return and deliver the new alerts."""
        return self._deliver(self._find(None if agents is None else set(agents), self.clock()))

    def _find(self, agents: set[str] | None, now: float) -> list[Surge]:
        with Reader(self.ledger) as reader:
            since = now - self.window_seconds
            if agents is None:
                return surges(reader, Scope(since=since), factor=self.factor)
            return [s for a in sorted(agents) for s in surges(reader, Scope(since=since, agent=a), factor=self.factor)]

    def _deliver(self, found: list[Surge]) -> list[SurgeAlert]:
        new = []
        for s in found:
            key = (s.agent, s.at, s.describe())
            if key in self._seen:
                continue
            self._seen.add(key)
            alert = SurgeAlert(s, surge_message(s), self._raise(s))
            new.append(alert)
            self.events.append(alert)
            if self.listener is not None:
                self.listener(alert)
        return new

    def _raise(self, s: Surge) -> CapRaise | None:
        """Record a bounded raise of the agent's task caps for this surge (queued: never blocks the loop)."""
        if self.raise_caps is None or s.ratio is None:
            return None
        now = self.clock()
        factor = min(s.ratio, Decimal(self.raise_caps.factor))
        raised = CapRaise(s.agent, factor, now, now + self.raise_caps.seconds, surge_message(s))
        self.ledger.sql.submit(partial(record_raise_tx, raise_=raised))
        return raised

    def _poll(self) -> None:
        """Deliver a finished background check; start another if agents are waiting and one is due."""
        pending = self._pending
        if pending is not None and pending.done():
            self._pending = None
            self.read_error = pending.exception()
            if self.read_error is None:
                self._deliver(pending.result())
        now = self.clock()
        if self._pending is None and self._dirty and not self._closed and now - self._last >= self.refresh_seconds:
            agents, self._dirty, self._last = self._dirty, set(), now
            self._pending = self._pool.submit(self._find, agents, now)

    def close(self) -> None:
        """Stop the background checker (waiting for a check under way); ``check()`` still works."""
        self._closed = True
        self._pool.shutdown(wait=True)

    # -- the observer -------------------------------------------------------------

    def task_started(self, task: TaskView) -> None:
        """Deliver any alerts a background check found."""
        self._poll()

    def step_recorded(self, task: TaskView, step: Mapping[str, Any], totals: Totals) -> None:
        """Nothing per step: a surge is judged on finished tasks."""

    def task_finished(self, task: TaskView, status: str, stop_reason: str | None, totals: Totals) -> None:
        """Mark the task's agent for the next check, and start one if it is due."""
        self._dirty.add(task.agent)
        self._poll()
