"""Tasks in flight in this process: what the kill switch and nested runs need to find them."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field

import anyio

from ._task import Task


@dataclass
class Running:
    """A task in flight in this process: what the kill switch needs to stop it."""

    task: Task
    depth: int
    accounts: tuple[str, ...]
    max_depth: int | None
    usd_capped: bool = False  # some account of its chain caps dollars
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    killed: str | None = None


CURRENT: contextvars.ContextVar[Running | None] = contextvars.ContextVar("paymaster_task", default=None)
