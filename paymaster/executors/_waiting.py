"""Fair, event-driven waiting for room on a budget account.

Holding every call's worst case can make a busy account look full while
little is spent. A call refused only because of holds in flight waits in a
queue on the refusing account, ordered first by when its task started, then
by when the call arrived: first come, first served, by task. Serving the
oldest task's calls first lets tasks finish, instead of every task getting
part-way and none completing when the money runs out. When a hold on that
account settles in this process, the call at the head of the queue is woken
and tries again; when it gets its reservation (or gives up) the next one is
woken. Only the head of a queue looks again on a timer, for holds that other
processes sharing the ledger settle: one re-check per account and interval,
never one per waiter.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Iterable

import anyio

RECHECK_SECONDS = 0.2  # how often the head of a queue looks for room freed by other processes


class Ticket:
    """A call's place in the queue of one account."""

    def __init__(self, waiters: Waiters, account: str, order: tuple[float, int]) -> None:
        self._waiters = waiters
        self.account = account
        self.order = order
        self._event = anyio.Event()

    def __lt__(self, other: Ticket) -> bool:
        return self.order < other.order

    @property
    def first(self) -> bool:
        """Whether this call is at the head of its account's queue."""
        queue = self._waiters.queues.get(self.account)
        return bool(queue) and queue[0] is self  # type: ignore[index]

    def wake(self) -> None:
        """Let this call try again."""
        self._event.set()

    async def wait(self, deadline: float) -> bool:
        """Wait to be woken (True), or for a re-check tick or the deadline (False)."""
        timeout = deadline - time.monotonic()
        if self.first:
            timeout = min(timeout, RECHECK_SECONDS)
        if timeout <= 0:
            return False
        with anyio.move_on_after(timeout):
            await self._event.wait()
        woken = self._event.is_set()
        self._event = anyio.Event()
        return woken

    def leave(self) -> None:
        """Leave the queue; if this call was at its head, wake the next one."""
        queue = self._waiters.queues.get(self.account)
        if not queue or self not in queue:
            return
        was_first = queue[0] is self
        queue.remove(self)
        if not queue:
            del self._waiters.queues[self.account]
        elif was_first:
            queue[0].wake()


class Waiters:
    """The queues of calls waiting for room, per account, in this process."""

    def __init__(self) -> None:
        self.queues: dict[str, list[Ticket]] = {}
        self._arrivals = itertools.count()

    def busy(self, accounts: Iterable[str]) -> str | None:
        """The first of ``accounts`` that already has calls waiting on it, if any."""
        return next((a for a in accounts if a in self.queues), None)

    def join(self, account: str, task_started: float) -> Ticket:
        """Take a place in ``account``'s queue: behind calls of older tasks, ahead of younger ones."""
        ticket = Ticket(self, account, (task_started, next(self._arrivals)))
        queue = self.queues.setdefault(account, [])
        head = queue[0] if queue else None
        bisect.insort(queue, ticket)
        if head is not None and queue[0] is ticket:
            head.wake()  # the old head is no longer first: let it wait as a follower (no re-checks)
        return ticket

    def notify(self, accounts: Iterable[str]) -> None:
        """A hold on these accounts settled: wake the head of each of their queues."""
        for account in accounts:
            queue = self.queues.get(account)
            if queue:
                queue[0].wake()
