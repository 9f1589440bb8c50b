"""Applying temporary cap raises (``cap_raises`` ledger rows) to the tasks an agent starts meanwhile."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import ROUND_FLOOR, Decimal
from functools import partial
from typing import Any

from ..ledger import Ledger
from ..ledger._raises import active_raises_tx
from ._agent import Agent
from ._budget import Budget

REFRESH_SECONDS = 5.0  # how stale this process's view of the raises may be; one short read per interval


def raised_budget(budget: Budget, factor: Decimal) -> Budget:
    """``budget`` with its spend caps (usd, tokens, steps, tool calls) times ``factor``, rounded down."""
    update: dict[str, Any] = {}
    if budget.usd is not None:
        update["usd"] = budget.usd * factor
    for name in ("tokens", "steps", "tool_calls"):
        value = getattr(budget, name)
        if value is not None:
            update[name] = int((Decimal(value) * factor).to_integral_value(rounding=ROUND_FLOOR))
    return budget.model_copy(update=update)


class RaisedCaps:
    """The cap raises in force, read from the ledger at most every ``REFRESH_SECONDS``, off the event loop."""

    def __init__(self, ledger: Ledger, clock: Callable[[], float] = time.time) -> None:
        self.ledger = ledger
        self.clock = clock
        self._factors: dict[str, Decimal] = {}
        self._next = float("-inf")
        self._made: dict[tuple[type[Agent], Decimal], type[Agent]] = {}

    async def apply(self, agent: type[Agent]) -> type[Agent]:
        """``agent`` with its task caps raised while a raise is in force for it (a subclass, made once)."""
        if not (isinstance(agent, type) and issubclass(agent, Agent)) or agent is Agent:
            return agent
        now = self.clock()
        if now >= self._next:
            self._next = now + REFRESH_SECONDS  # tasks starting meanwhile use the view already read
            self._factors = await self.ledger.sql.run(partial(active_raises_tx, now=now))
        factor = self._factors.get(agent.name)
        if factor is None or factor <= 1:
            return agent
        made = self._made.get((agent, factor))
        if made is None:
            made = type(agent.__name__, (agent,), {
                "budget": raised_budget(agent.budget, factor), "__module__": agent.__module__,
            })
            self._made[(agent, factor)] = made
        return made
