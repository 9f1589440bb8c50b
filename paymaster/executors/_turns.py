"""Turns on the event loop: at most a few CPU-heavy sections start per loop iteration; the rest wait, in order.

asyncio runs every callback that is ready in one pass before it looks at
timers and sockets again. When a thousand tasks are ready together (a fleet
starting at once, or replies arriving together), a pass runs all of them and
the loop is deaf for as long: other tasks' network I/O, timeouts and heartbeats
wait. Each task start, each call's reservation and each reply's settlement
first takes a turn: ``PER_PASS`` of them go at once, the others queue (first
come, first served) and are let through a batch per pass, so a pass stays
short and the loop keeps answering. The work is the same; it is spread.

A section counts for as many turns as it costs calls' worth of work: a task's
start (its ledger row, plan, routes and admission) takes ``TASK_START`` turns,
so that a pass of 32 task starts (about 20 ms on a 2-core machine) does not
become the loop's longest wait.

Outside asyncio (e.g. trio), taking a turn does nothing.
"""

from __future__ import annotations

import asyncio
from collections import deque

import anyio

PER_PASS = 32  # sections let through per pass of the event loop
TASK_START = 8  # turns a task's start counts for: measured, it costs about as much as eight calls' sections


class Turns:
    """Hands out turns for CPU-heavy sections, ``per_pass`` per event-loop pass, in arrival order."""

    def __init__(self, per_pass: int = PER_PASS) -> None:
        if per_pass < 1:
            raise ValueError(f"per_pass must be >= 1, got {per_pass}")
        self.per_pass = per_pass
        self._used = 0
        self._waiting: deque[tuple[asyncio.Future[None], int]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_pass_scheduled = False

    async def take(self, *, shielded: bool = False, weight: int = 1) -> None:
        """Return when this section may run: at once while the pass has turns left, else in a later pass.

        ``shielded``: a cancellation waits until the turn comes (for work that must not be dropped, such
        as settling a reply already received). ``weight``: how many turns the section counts for (a
        section that costs several calls' worth of work uses up as many of a pass's turns).
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not asyncio: no turns to take
        if loop is not self._loop:  # a new event loop (run_sync, tests): start afresh
            self._loop, self._used, self._next_pass_scheduled = loop, 0, False
            self._waiting.clear()
        if self._used < self.per_pass and not self._waiting:
            # No pass needs to end for this one: turns taken are counted until they run out, and only
            # then does the next pass start a fresh count (at most once per pass).
            self._used += weight
            return
        turn: asyncio.Future[None] = loop.create_future()
        place = (turn, weight)
        self._waiting.append(place)
        self._schedule(loop)
        if shielded:
            with anyio.CancelScope(shield=True):
                await turn
            return
        try:
            await turn
        except BaseException:
            if not turn.done():
                self._waiting.remove(place)
            raise

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._next_pass_scheduled:
            self._next_pass_scheduled = True
            loop.call_soon(self._next_pass)  # runs in the next pass, after this one's timers and I/O

    def _next_pass(self) -> None:
        self._next_pass_scheduled = False
        self._used = 0
        while self._waiting and self._used < self.per_pass:
            turn, weight = self._waiting.popleft()
            if not turn.done():  # a waiter cancelled meanwhile gives its place up
                turn.set_result(None)
                self._used += weight
        if self._waiting and self._loop is not None:
            self._schedule(self._loop)
