"""What to do when a call does not fit: halt, downgrade, truncate context, or ask for approval."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from .._money import fmt_usd, from_picos
from ..ledger import Refusal
from ..pricing import ModelPrices, bound_prompt_tokens
from ..providers._types import Message, ModelRequest
from ..router import Tier, TierTable

_TRUNCATED = "[earlier context cut to fit the budget]\n"
_MIN_CONTENT_BYTES = 200  # below this a truncated prompt is no longer the task


class CapPolicy(StrEnum):
    """A response to a refused call, tried in the order an agent lists them."""

    HALT = "halt"
    DOWNGRADE = "downgrade"
    TRUNCATE = "truncate"
    APPROVE = "approve"


@dataclass(frozen=True, repr=False)
class ApprovalRequest:
    """A task asks for more room on an account; the approver may take as long as it likes.

    ``cap``, ``used`` and ``needed`` are in the dimension's ledger unit (pico-dollars
    for ``usd``); ``cap_usd``, ``used_usd``, ``needed_usd`` and ``shortfall_usd`` give
    dollars, and ``str()`` / ``repr()`` show dollars.
    """

    task_id: str
    agent: str
    tenant: str
    account: str
    dimension: str
    cap: int
    used: int
    needed: int
    reason: str

    @property
    def shortfall(self) -> int:
        """How much the cap must grow for the call to fit, in the dimension's unit."""
        return self.used + self.needed - self.cap

    @property
    def shortfall_usd(self) -> Decimal | None:
        """The shortfall in dollars, for a USD cap."""
        return from_picos(self.shortfall) if self.dimension == "usd" else None

    @property
    def cap_usd(self) -> Decimal | None:
        """The account's cap in dollars, for a USD cap."""
        return from_picos(self.cap) if self.dimension == "usd" else None

    @property
    def used_usd(self) -> Decimal | None:
        """What the account has spent or holds, in dollars, for a USD cap."""
        return from_picos(self.used) if self.dimension == "usd" else None

    @property
    def needed_usd(self) -> Decimal | None:
        """What the refused call needs, in dollars, for a USD cap."""
        return from_picos(self.needed) if self.dimension == "usd" else None

    def _amount(self, value: int) -> str:
        return fmt_usd(from_picos(value)) if self.dimension == "usd" else f"{value:,} {self.dimension}"

    def __str__(self) -> str:
        """A sentence for people: which account, its cap, what is used and needed, in dollars for USD."""
        return (
            f"task {self.task_id} ({self.agent}, tenant {self.tenant}) asks for {self._amount(self.shortfall)} "
            f"more on {self.account}: cap {self._amount(self.cap)}, used {self._amount(self.used)}, "
            f"this call needs {self._amount(self.needed)} ({self.reason})"
        )

    def __repr__(self) -> str:
        """The fields, with USD amounts in dollars rather than pico-dollars."""
        return (
            f"ApprovalRequest(task_id={self.task_id!r}, agent={self.agent!r}, tenant={self.tenant!r}, "
            f"account={self.account!r}, dimension={self.dimension!r}, cap={self._amount(self.cap)}, "
            f"used={self._amount(self.used)}, needed={self._amount(self.needed)}, reason={self.reason!r})"
        )


Approver = Callable[[ApprovalRequest], Awaitable[bool]]


def describe_refusal(refusal: Refusal) -> str:
    """A sentence saying which cap refused a call and by how much."""
    if refusal.dimension == "killed":
        return f"killed: the kill switch is on for {refusal.account}"
    if refusal.dimension == "usd":
        cap, used, need = (fmt_usd(from_picos(v)) for v in (refusal.cap, refusal.used, refusal.needed))
        unit = ""
    else:
        cap, used, need = str(refusal.cap), str(refusal.used), str(refusal.needed)
        unit = {"tokens": " tokens", "steps": " model calls", "tool_calls": " tool calls"}[refusal.dimension]
    return (
        f"{refusal.dimension} cap of account {refusal.account} reached: the call's worst case of {need}{unit} "
        f"does not fit ({used}{unit} of {cap}{unit} already spent or reserved)"
    )


def downgrade(tiers: TierTable, tier: Tier, request: ModelRequest) -> tuple[Tier, ModelRequest] | None:
    """The next cheaper tier and the request re-aimed at it, or None at the cheapest tier."""
    rank = tiers.rank(tier.name)
    if rank == 0:
        return None
    cheaper = tiers.tiers[rank - 1]
    return cheaper, request.model_copy(update={"model": cheaper.model, "max_tokens": cheaper.max_tokens})


def truncate_to_fit(request: ModelRequest, refusal: Refusal, prices: ModelPrices | None) -> ModelRequest | None:
    """Cut the oldest part of the last user message so the call's worst case fits what is left."""
    if refusal.dimension == "tokens":
        allowed = refusal.remaining - request.max_tokens
    elif refusal.dimension == "usd" and prices is not None:
        rates = prices.rates_for(bound_prompt_tokens(request))
        out_picos = request.max_tokens * rates.output * 10**6
        in_picos = max(rates.input, rates.cache_write) * 10**6
        if in_picos <= 0:
            return None
        allowed = int((refusal.remaining - out_picos) / in_picos)
    else:
        return None
    users = [i for i, m in enumerate(request.messages) if m.role == "user"]
    if not users:
        return None
    last = users[-1]
    content = request.messages[last].content.encode("utf-8")
    others = bound_prompt_tokens(request) - len(content)
    room = allowed - others - len(_TRUNCATED.encode())
    if room < _MIN_CONTENT_BYTES or room >= len(content):
        return None
    kept = content[len(content) - room :].decode("utf-8", errors="ignore")
    messages = list(request.messages)
    messages[last] = Message(role="user", content=_TRUNCATED + kept)
    return request.model_copy(update={"messages": tuple(messages)})
