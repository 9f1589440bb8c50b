"""Results of queued ledger work: a small thread-safe future, and awaiting one from async code."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

import anyio

T = TypeVar("T")


class Pending(Generic[T]):
    """The result of a unit of ledger work, ready once its group is committed: a small thread-safe future.

    ``concurrent.futures.Future`` builds a lock and a condition per instance;
    most units are never waited on by a thread, so this one makes its event
    only when ``result()`` has to block. It cannot be cancelled: queued work
    always runs, so that no hold or settlement is lost half-way.
    """

    __slots__ = ("_callbacks", "_done", "_error", "_event", "_value")

    def __init__(self) -> None:
        self._done = False
        self._value: T | None = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[Pending[T]], object]] = []
        self._event: threading.Event | None = None

    def done(self) -> bool:
        """Whether the work has committed (or failed)."""
        return self._done

    def result(self) -> T:
        """The work's result, blocking this thread until it is ready; its error is raised."""
        self._wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def exception(self) -> BaseException | None:
        """The work's error, or None; blocks this thread until the work is done."""
        self._wait()
        return self._error

    def add_done_callback(self, fn: Callable[[Pending[T]], object]) -> None:
        """Call ``fn(self)`` once done (at once if it already is), on whichever thread finishes it."""
        with _STATE:
            if not self._done:
                self._callbacks.append(fn)
                return
        fn(self)

    def set_result(self, value: T) -> None:
        """Finish with a result."""
        self._finish(value, None)

    def set_exception(self, error: BaseException) -> None:
        """Finish with an error."""
        self._finish(None, error)

    def _finish(self, value: T | None, error: BaseException | None) -> None:
        with _STATE:
            if self._done:
                return
            self._value, self._error, self._done = value, error, True
            callbacks, self._callbacks = self._callbacks, []
            event = self._event
        if event is not None:
            event.set()
        for fn in callbacks:
            fn(self)

    def _wait(self) -> None:
        if self._done:
            return
        with _STATE:
            if not self._done and self._event is None:
                self._event = threading.Event()
            event = self._event
        if event is not None:
            event.wait()


_STATE = threading.Lock()  # guards every Pending's state changes: each is a few attribute writes


async def wait(future: Pending[T]) -> T:
    """Await a writer future from async code, without blocking the event loop.

    Cancelling the awaiting task does not cancel the work: once queued, a unit
    runs and commits (a reservation whose caller was cancelled is released by
    the caller's cleanup, never lost half-way).
    """
    if future.done():
        return future.result()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # another event loop (trio): a worker thread waits instead
        return await anyio.to_thread.run_sync(future.result)
    waiter: asyncio.Future[T] = loop.create_future()

    def done(finished: Pending[T]) -> None:
        loop.call_soon_threadsafe(_copy, finished, waiter)

    future.add_done_callback(done)
    return await waiter


def _copy(source: Pending[T], target: asyncio.Future[T]) -> None:
    if target.done():  # the awaiting task was cancelled
        return
    error = source.exception()
    if error is not None:
        target.set_exception(error)
    else:
        target.set_result(source.result())
