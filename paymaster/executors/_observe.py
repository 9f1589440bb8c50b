"""Observers: code that watches tasks and their steps as they happen (traces, live cost checks).

The guard hands every step row it writes to each observer, and the runtime
tells them when a task starts and ends. An observer never changes what is
charged; it may stop a task by raising ``Halt`` (a live anomaly check with
``on_anomaly="halt"``), which ends the task with status ``halted``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..ledger import Totals


@dataclass(frozen=True)
class TaskView:
    """What an observer knows of a task: who runs it, for whom, under which budget."""

    task_id: str
    agent: str
    agent_version: str
    tenant: str
    tags: Mapping[str, str] = field(default_factory=dict)
    budget: Mapping[str, Any] = field(default_factory=dict)
    parent_id: str | None = None
    started_at: float = 0.0  # wall-clock seconds


class Halt(Exception):
    """Raised by an observer to stop a task now; the task ends ``halted`` with this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@runtime_checkable
class Observer(Protocol):
    """Watches tasks and steps; every method is called on the event loop and must not block."""

    def task_started(self, task: TaskView) -> None:
        """A task began (before planning)."""

    def step_recorded(self, task: TaskView, step: Mapping[str, Any], totals: Totals) -> None:
        """A step row was handed to the ledger: a call, a refusal, a tool call, a cache hit.

        ``step`` has the ledger's step columns (pico-dollar costs, tokens, latency_ms,
        created_at) plus ``request_model`` (the model asked for; ``model`` is the one
        that served); ``totals`` are the task's totals including this step.
        """

    def task_finished(self, task: TaskView, status: str, stop_reason: str | None, totals: Totals) -> None:
        """A task ended, with its totals."""
