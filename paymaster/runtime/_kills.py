"""The kill switch across workers: a task here stops within about a second of a kill thrown by another one.

``Runtime.kill`` cancels the tasks of its own process at once and sets a
flag on the ledger that every worker's next reservation reads. A call already
in flight in another worker would still run to its end; this watch, run by the
ledger's heartbeat thread about once a second while tasks run here, reads the
flags of their shared accounts and cancels the tasks whose agent, tenant or tag
was killed. A call cancelled in flight is charged at its worst case, as for a
kill in this process.
"""

from __future__ import annotations

import asyncio
import contextlib

from ..ledger import Ledger
from ._running import Running


class KillWatch:
    """Cancels this runtime's tasks once any worker has thrown the kill switch on one of their accounts."""

    def __init__(self, ledger: Ledger, running: dict[str, Running]) -> None:
        self._ledger = ledger
        self._running = running
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self) -> None:
        """Remember the event loop the tasks run on (called from a task; outside asyncio there is none)."""
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    def check(self) -> None:
        """Look up the kill flags of the running tasks' shared accounts (on the heartbeat thread)."""
        loop, running = self._loop, list(self._running.values())
        if loop is None or loop.is_closed() or not running:
            return
        scopes = {a for r in running if r.killed is None for a in r.accounts if not a.startswith("task:")}
        killed = self._ledger.killed_among(scopes)
        if killed:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: its tasks are gone
                loop.call_soon_threadsafe(self.stop, killed)

    def stop(self, killed: set[str]) -> None:
        """Cancel every task here that runs under one of ``killed`` (on the event loop)."""
        for running in list(self._running.values()):
            hit = killed.intersection(running.accounts)
            if hit and running.killed is None:
                running.killed = f"killed: the kill switch was thrown for {', '.join(sorted(hit))} (by another worker)"
                running.scope.cancel()
