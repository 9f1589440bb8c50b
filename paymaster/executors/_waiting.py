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
from collections.abc import Iterable, Sequence
from functools import partial

import anyio

from ..ledger import Charge, Ledger, Refusal, Reservation
from ..ledger._writer import Pending, wait
from ._context import CallContext

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


class Reserver:
    """Reserves a call's hold; while the only obstacle is other calls' holds in flight, waits its turn.

    Holding every call's worst case means a busy account can look full while
    little is spent. Such a refusal is transient: the call waits in the
    refusing account's queue (up to ``budget_wait`` seconds) instead of
    failing, and still never overspends.
    """

    def __init__(self, ledger: Ledger, budget_wait: float) -> None:
        self.ledger = ledger
        self.budget_wait = budget_wait
        self.waiters = Waiters()

    async def reserve(
        self, ctx: CallContext, accounts: Sequence[str], held: Charge, kind: str, subtask_id: str | None,
        provider: str | None, model: str | None, tier: str | None,
    ) -> Reservation | Refusal:
        """A committed hold on every account, or the refusal that stands once waiting cannot help."""
        deadline = time.monotonic() + self.budget_wait
        ticket: Ticket | None = None
        try:
            busy = self.waiters.busy(accounts) if self.budget_wait > 0 else None
            if busy is not None:  # others already wait for room there: queue behind them
                ticket = self.waiters.join(busy, ctx.started)
                while not ticket.first and time.monotonic() < deadline:
                    await ticket.wait(deadline)
            while True:
                pending = self.ledger.accounts.reserve_later(
                    accounts, held, task_id=ctx.task_id, kind=kind, subtask_id=subtask_id,
                    provider=provider, model=model, tier=tier,
                )
                try:
                    reservation = await wait(pending)
                except BaseException:
                    # Cancelled while the hold was being written: once it commits, release it (the call
                    # was never sent), so that no hold outlives its caller.
                    pending.add_done_callback(partial(self._release, ctx, kind, subtask_id))
                    raise
                if not isinstance(reservation, Refusal) or not reservation.transient:
                    return reservation
                if time.monotonic() >= deadline:
                    return reservation
                if ticket is None or ticket.account != reservation.account:
                    if ticket is not None:
                        ticket.leave()
                    ticket = self.waiters.join(reservation.account, ctx.started)
                if not await ticket.wait(deadline) and ticket.first:
                    # Nothing settled here for a while: the holder may be a process that died
                    # mid-call. Look (at most once per interval per process, off the loop).
                    await self.ledger.arecover()
        finally:
            if ticket is not None:
                ticket.leave()

    def _release(self, ctx: CallContext, kind: str, subtask_id: str | None,
                 done: Pending[Reservation | Refusal]) -> None:
        held = done.result() if done.exception() is None else None
        if isinstance(held, Reservation):
            self.ledger.accounts.settle_later(held, Charge(), {
                "task_id": ctx.task_id, "subtask_id": subtask_id, "kind": kind, "status": "refused",
                "cost_picos": 0, "error": "cancelled before the call was sent: its hold was released",
                "created_at": time.time(),
            })
