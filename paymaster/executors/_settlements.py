"""The guard's recording half: steps queued to the ledger, settlements, and what follows them.

A step that holds no reservation is queued as it is; a settlement is queued
without waiting for it (a crash before it commits leaves the hold, which
recovery closes at its worst case). Once a settlement commits, its cap alerts
fire and the calls waiting for room on its accounts are woken, on the loop
that made the call. Observers see every step as it is recorded.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from ..ledger import Alert, Charge, Ledger, Reservation
from ..ledger._writer import Pending
from ._context import CallContext
from ._observe import Halt
from ._waiting import Reserver


class Settlements:
    """Records steps and queues settlements for ``BudgetGuard`` (its base class), on its ledger and reserver."""

    ledger: Ledger
    reserver: Reserver

    def _alert(self, alert: Alert) -> None:
        self.ledger.accounts.fire([alert])

    def record(self, ctx: CallContext, step: dict[str, Any]) -> None:
        """Queue a step that holds no reservation, and count it in the task's totals."""
        ctx.charges.totals.add(step)
        self.ledger.record_step_later(step)
        self._observe(ctx, step)

    def _settle(self, ctx: CallContext, reservation: Reservation, spent: Charge, step: dict[str, Any]) -> None:
        """Queue a settlement (it needs no wait: a crash before it commits leaves the hold, closed at worst case).

        Once committed, its alerts fire and calls waiting for room on its accounts are woken, on this loop.
        """
        ctx.charges.totals.add(step)
        future = self.ledger.watch(ctx.task_id, self.ledger.accounts.settle_later(reservation, spent, step))
        self._observe(ctx, step)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # another event loop: waiters find the room on their next re-check

        here = threading.get_ident()

        def done(settled: Pending[list[Alert]]) -> None:
            try:
                if threading.get_ident() == here:  # committed in place by this loop: no wake-up needed
                    loop.call_soon(self._settled, reservation.accounts, settled)
                else:
                    loop.call_soon_threadsafe(self._settled, reservation.accounts, settled)
            except RuntimeError:  # the loop has ended (its last settlement was written at close): no one waits
                if settled.exception() is None:
                    self.ledger.accounts.fire(settled.result())

        future.add_done_callback(done)

    @staticmethod
    def _observe(ctx: CallContext, step: Mapping[str, Any]) -> None:
        if ctx.view is None:
            return
        halt: Halt | None = None
        for observer in ctx.observers:  # every observer sees the step, even after one asks to halt
            try:
                observer.step_recorded(ctx.view, step, ctx.charges.totals)
            except Halt as stop:
                halt = halt or stop
        if halt is not None:
            raise halt

    def _settled(self, accounts: Sequence[str], settled: Pending[list[Alert]]) -> None:
        self.reserver.waiters.notify(accounts)
        if settled.exception() is None:
            self.ledger.accounts.fire(settled.result())
