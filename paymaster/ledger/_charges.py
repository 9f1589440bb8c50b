"""Budget amounts as values: a charge, an account's caps, a hold, a refusal, an alert.

The four dimensions every account counts (pico-dollars, tokens, model calls,
tool calls) and the names a Budget gives them. Plain frozen dataclasses with
no database behind them, so every ledger module can import them.
"""

from __future__ import annotations

from dataclasses import dataclass

DIMENSIONS = ("picos", "tokens", "calls", "tool_calls")
_UNIT = {"picos": "usd", "tokens": "tokens", "calls": "steps", "tool_calls": "tool_calls"}


@dataclass(frozen=True, slots=True)
class Charge:
    """An amount held or spent: pico-dollars, tokens, model calls and tool calls."""

    picos: int = 0
    tokens: int = 0
    calls: int = 0
    tool_calls: int = 0


@dataclass(frozen=True, slots=True)
class Caps:
    """Limits of one account; ``None`` means unlimited."""

    picos: int | None = None
    tokens: int | None = None
    calls: int | None = None
    tool_calls: int | None = None


@dataclass(frozen=True, slots=True)
class Reservation:
    """A hold on every account of a chain, to be settled once the call's cost is known."""

    id: str
    accounts: tuple[str, ...]
    held: Charge
    direct: tuple[str, ...] | None = None  # the accounts whose rows hold it (None: all); the rest via leases
    leases: tuple[str, ...] = ()  # the leases (of this worker) that hold it on shared accounts

    @property
    def rows(self) -> tuple[str, ...]:
        """The accounts whose own rows this reservation changes (the ones to lock)."""
        return self.accounts if self.direct is None else self.direct


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a reservation did not fit: the account and the cap it would have passed (or a kill)."""

    account: str
    dimension: str  # "usd", "tokens", "steps", "tool_calls" or "killed" (named as on a Budget)
    cap: int
    used: int  # spent + reserved at the time of the refusal
    needed: int
    spent: int = 0  # of ``used``, what is settled; the rest is held by calls in flight

    @property
    def remaining(self) -> int:
        """What was still free on the refusing account, in the dimension's unit."""
        return max(self.cap - self.used, 0)

    @property
    def transient(self) -> bool:
        """True when the call would fit once the calls in flight settle (they hold their worst case)."""
        return self.dimension != "killed" and self.spent + self.needed <= self.cap < self.used + self.needed


@dataclass(frozen=True, slots=True)
class Alert:
    """Something a person should know: a cap nearly used up, or a provider that misbehaved.

    ``kind`` is ``"cap"`` (an account's spend passed ``threshold`` of its cap in
    ``dimension``; fired once per threshold), ``"served_model"`` (a provider
    served a pricier model than the one asked for), ``"model_rejected"`` (a
    tier got a model it does not accept) or ``"max_tokens_ignored"`` (a reply
    longer than its ``max_tokens``). For provider alerts ``account`` is
    ``tier:NAME`` and ``message`` says what happened.
    """

    account: str
    dimension: str
    threshold: float
    spent: int
    cap: int
    kind: str = "cap"
    message: str = ""

