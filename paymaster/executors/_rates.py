"""Rate limits per agent, tenant, tag or tool: calls, tokens and dollars per minute and per hour.

A call is admitted after its budget hold, just before it is sent (see
``ledger._rates``: a sliding window, shared by every process on the ledger).
A call over a rate waits its turn, first come first served per rate key, for
the moment the window has room, up to the gate's ``wait`` seconds; past that
its hold is released, a ``refused`` step row says which rate stopped it, and
the task ends as ``rate_limited``. Waiting needs no polling: the ledger says
when the oldest admissions leave the window, and only the head of a key's
queue sleeps until then.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from pydantic import Field, StrictInt, field_validator, model_validator

from .._checked import CheckedModel, dollars
from .._money import fmt_usd, from_picos, to_picos
from ..errors import ConfigurationError
from ..ledger import Charge, Ledger, Refusal, Reservation
from ..ledger._rates import RateRefusal, RateRule, admit_tx, anchors
from ._context import BudgetStop, CallContext
from ._waiting import Reserver

PositiveCount = Annotated[StrictInt, Field(gt=0)]
PositiveUSD = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
_WINDOWS = {"minute": 60.0, "hour": 3600.0}
PRUNE_SECONDS = 60.0  # how often admissions also delete rows that left every window
_UNITS = {"calls": "calls", "tool_calls": "tool calls", "tokens": "tokens"}


class Rate(CheckedModel):
    """How much may be used per minute and per hour; every limit set must hold in any such window.

    ``calls_*`` count model calls (on a tool's rate: calls of that tool),
    ``tool_calls_*`` tool calls, ``tokens_*`` tokens and ``usd_*`` dollars, each
    call counted at its worst case (``max_tokens``), as providers' own token
    rate limits count it.
    """

    noun = "limit"

    calls_per_minute: PositiveCount | None = None
    calls_per_hour: PositiveCount | None = None
    tool_calls_per_minute: PositiveCount | None = None
    tool_calls_per_hour: PositiveCount | None = None
    tokens_per_minute: PositiveCount | None = None
    tokens_per_hour: PositiveCount | None = None
    usd_per_minute: PositiveUSD | None = None
    usd_per_hour: PositiveUSD | None = None

    if TYPE_CHECKING:

        def __init__(
            self,
            *,
            calls_per_minute: int | None = None,
            calls_per_hour: int | None = None,
            tool_calls_per_minute: int | None = None,
            tool_calls_per_hour: int | None = None,
            tokens_per_minute: int | None = None,
            tokens_per_hour: int | None = None,
            usd_per_minute: Decimal | str | int | None = None,
            usd_per_hour: Decimal | str | int | None = None,
        ) -> None: ...

    @field_validator("usd_per_minute", "usd_per_hour", mode="before")
    @classmethod
    def _no_float_money(cls, value: Any) -> Any:
        return dollars(value, "0.50")

    @model_validator(mode="after")
    def _something_set(self) -> Rate:
        if all(v is None for v in self.model_dump().values()):
            raise ValueError(f"set at least one limit: {', '.join(type(self).model_fields)}")
        return self

    def rules(self, key: str) -> tuple[RateRule, ...]:
        """This rate's limits as ledger rules under ``key`` (dollars in pico-dollars)."""
        found = []
        for name, value in self.model_dump().items():
            if value is None:
                continue
            dimension, _, period = name.rpartition("_per_")
            if dimension == "usd":
                found.append(RateRule(key, "picos", to_picos(value), _WINDOWS[period]))
            else:
                found.append(RateRule(key, dimension, int(value), _WINDOWS[period]))
        return tuple(found)



def describe_rate_refusal(refusal: RateRefusal) -> str:
    """A sentence saying which rate stopped a call."""
    rule = refusal.rule
    period = "minute" if rule.window == 60 else "hour"
    if rule.dimension == "picos":
        limit, need, used = (fmt_usd(from_picos(v)) for v in (rule.limit, refusal.needed, refusal.used))
    else:
        unit = " " + _UNITS[rule.dimension]
        limit, need, used = f"{rule.limit}{unit}", f"{refusal.needed}{unit}", f"{refusal.used}{unit}"
    if refusal.retry_at is None:
        return (f"rate_limited: the call needs {need}, more than the rate of {rule.key} allows in any "
                f"{period} ({limit}); raise the rate or make the call smaller")
    return f"rate_limited: {rule.key} allows {limit} per {period}; {used} used in the last {period}, call needs {need}"


class _Waiter:
    """A call's place in one rate key's queue."""

    def __init__(self, queue: deque[_Waiter], key: str) -> None:
        self.queue = queue
        self.key = key
        self.turn = anyio.Event()

    @property
    def first(self) -> bool:
        return bool(self.queue) and self.queue[0] is self


class RateGate:
    """The rates in force, and the queues of calls waiting for room under them in this process."""

    def __init__(
        self,
        ledger: Ledger,
        wait: float = 60.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        if not wait >= 0:
            raise ConfigurationError(f"rate_wait is seconds >= 0, got {wait}")
        self.ledger = ledger
        self.wait = wait
        self.clock = clock  # wall time shared by the processes on the ledger (a fake one in tests)
        self.sleep = sleep
        self.rules: dict[str, dict[RateRule, None]] = {}
        self._queues: dict[str, deque[_Waiter]] = {}
        self._anchored: set[str] = set()  # keys whose anchor rows this gate saw committed
        self._pruned: dict[str, float] = {}  # key -> when its rows that left every window are next deleted

    def add(self, key: str, rate: Rate) -> None:
        """Enforce ``rate`` on calls under ``key`` (``agent:NAME``, ``tenant:NAME``, ``tag:K=V``, ``tool:NAME``)."""
        if not isinstance(rate, Rate):
            raise ConfigurationError(f"the rate of {key!r} must be a paymaster.Rate, got {type(rate).__name__}")
        self.rules.setdefault(key, {}).update(dict.fromkeys(rate.rules(key)))

    def declare(self, agent: str, rate: Rate | None, tools: Iterable[object]) -> None:
        """Enforce what an agent class declares: its own rate, and its tools' (``@tool(rate=...)``)."""
        if rate is not None:
            self.add(f"agent:{agent}", rate)
        for t in tools:
            policy = getattr(t, "policy", None)  # a Tool (this module cannot import _tools: it imports Rate)
            if policy is not None and policy.rate is not None:
                self.add(f"tool:{t.name}", policy.rate)  # type: ignore[attr-defined]

    def needs(self, accounts: Sequence[str], held: Charge, tool: str | None) -> dict[str, Charge]:
        """What the call counts under each of its rated keys."""
        needs = {a: held for a in accounts if a in self.rules}
        if tool is not None and f"tool:{tool}" in self.rules:
            needs[f"tool:{tool}"] = Charge(picos=held.picos, calls=1, tool_calls=1)
        return needs

    async def admit(self, ctx: CallContext, needs: dict[str, Charge]) -> RateRefusal | None:
        """Record the call under its rates, waiting (FIFO per key) up to ``wait``; else the refusal that stands."""
        rules = [rule for key in needs for rule in self.rules[key]]
        deadline = self.clock() + self.wait
        waiter: _Waiter | None = None
        try:
            busy = next((k for k in needs if self._queues.get(k)), None)
            if busy is not None:  # others wait under this key already: queue behind them
                waiter = self._join(busy)
                await waiter.turn.wait()
            while True:
                now = self.clock()
                ensure = not self._anchored.issuperset(needs)
                prune = any(now >= self._pruned.get(key, float("-inf")) for key in needs)
                refusal = await self.ledger.sql.run(
                    partial(admit_tx, rules=rules, needs=needs, now=now, task_id=ctx.task_id, ensure=ensure,
                            prune=prune),
                    locks=anchors(sorted(needs)),
                )
                self._anchored.update(needs)  # committed: the anchor rows exist for good
                if prune and refusal is None:
                    self._pruned.update(dict.fromkeys(needs, now + PRUNE_SECONDS))
                if refusal is None:
                    return None
                if refusal.retry_at is None or refusal.retry_at > deadline:
                    return refusal  # no room before the deadline, even if no one else calls
                if waiter is None or waiter.key != refusal.rule.key:
                    self._leave(waiter)
                    waiter = self._join(refusal.rule.key)
                if waiter.first:
                    await self.sleep(max(refusal.retry_at - self.clock(), 0.0))
                else:
                    await waiter.turn.wait()
        finally:
            self._leave(waiter)

    def _join(self, key: str) -> _Waiter:
        queue = self._queues.setdefault(key, deque())
        waiter = _Waiter(queue, key)
        queue.append(waiter)
        if waiter.first:
            waiter.turn.set()
        return waiter

    def _leave(self, waiter: _Waiter | None) -> None:
        if waiter is None or waiter not in waiter.queue:
            return
        was_first = waiter.first
        waiter.queue.remove(waiter)
        if not waiter.queue:
            self._queues.pop(waiter.key, None)
        elif was_first:
            waiter.queue[0].turn.set()


class RatedReserver(Reserver):
    """A Reserver whose holds must also pass the rate gate before the call is sent."""

    def __init__(self, ledger: Ledger, budget_wait: float, gate: RateGate) -> None:
        super().__init__(ledger, budget_wait)
        self.gate = gate

    async def reserve(
        self, ctx: CallContext, accounts: Sequence[str], held: Charge, kind: str, subtask_id: str | None,
        provider: str | None, model: str | None, tier: str | None,
    ) -> Reservation | Refusal:
        """The budget hold, once the call's rates admit it; a rate that cannot ends the task (``BudgetStop``)."""
        reservation = await super().reserve(ctx, accounts, held, kind, subtask_id, provider, model, tier)
        if isinstance(reservation, Refusal) or not self.gate.rules:
            return reservation
        needs = self.gate.needs(accounts, held, model if provider == "tool" else None)
        if not needs:
            return reservation
        try:
            refused = await self.gate.admit(ctx, needs)
        except BaseException:
            self._drop(ctx, reservation, kind, subtask_id, provider, model, tier, "cancelled while waiting for a rate")
            raise
        if refused is None:
            return reservation
        reason = describe_rate_refusal(refused)
        self._drop(ctx, reservation, kind, subtask_id, provider, model, tier, reason)
        raise BudgetStop(reason, Refusal(refused.rule.key, "rate", refused.rule.limit, refused.used, refused.needed))

    def _drop(
        self, ctx: CallContext, reservation: Reservation, kind: str, subtask_id: str | None,
        provider: str | None, model: str | None, tier: str | None, reason: str,
    ) -> None:
        """Release a hold whose call will not be sent, with a ``refused`` step row saying why."""
        step = {
            "task_id": ctx.task_id, "subtask_id": subtask_id, "kind": kind, "status": "refused",
            "provider": provider, "model": model, "request_model": model, "tier": tier, "cost_picos": 0,
            "reserved_picos": reservation.held.picos, "error": reason, "created_at": time.time(),
        }
        ctx.charges.totals.add(step)
        released = self.ledger.watch(ctx.task_id, self.ledger.accounts.settle_later(reservation, Charge(), step))
        loop = asyncio.get_running_loop()

        def wake(_: object) -> None:  # once the release is committed, calls waiting for that room look again
            with contextlib.suppress(RuntimeError):  # the loop has ended: no one waits
                loop.call_soon_threadsafe(self.waiters.notify, reservation.accounts)

        released.add_done_callback(wake)


def rate_keys(keys: Iterable[str]) -> list[str]:
    """Check rate keys: ``agent:``, ``tenant:``, ``tag:K=V`` or ``tool:`` followed by a name."""
    checked = []
    for key in keys:
        scope, _, name = key.partition(":")
        if scope not in ("agent", "tenant", "tag", "tool") or not name or (scope == "tag" and "=" not in name):
            raise ConfigurationError(
                f"unknown rate key {key!r}: write \"agent:NAME\", \"tenant:NAME\", \"tag:KEY=VALUE\" or \"tool:NAME\""
            )
        checked.append(key)
    return checked
