"""What a call is for and how it may end: the call context, run totals, and the stops a call can raise."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from ..errors import MalformedResponseError, PaymasterError, ProviderError, ProviderTimeoutError
from ..ledger import Refusal, Totals
from ..ledger._writer import Pending, wait
from ..pricing import ModelPrices
from ..providers._types import Usage
from ._cached import Cache
from ._observe import Observer, TaskView
from ._policy import ApprovalRequest, Approver, CapPolicy


class BudgetStop(Exception):
    """A call did not fit a budget and the agent's policy could not make it fit: the task stops."""

    def __init__(self, reason: str, refusal: Refusal | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.refusal = refusal

    @property
    def killed(self) -> bool:
        """True when the refusal came from the kill switch."""
        return self.refusal is not None and self.refusal.dimension == "killed"

    @property
    def rate_limited(self) -> bool:
        """True when a rate limit stopped the call (it waited as long as allowed)."""
        return self.refusal is not None and self.refusal.dimension == "rate"


class ModelRejected(Exception):
    """A response came from a model its tier does not accept: the task stops for a person to look."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def may_have_billed(exc: BaseException) -> bool:
    """Whether a failed call may have reached the provider, and so must be charged at its worst case.

    A provider error says so itself (``billable``); a cancellation or an
    unexpected error inside a provider may have come after the request was
    sent. Only errors that prove nothing was sent are free.
    """
    if isinstance(exc, ProviderError):
        return bool(getattr(exc, "billable", isinstance(exc, ProviderTimeoutError | MalformedResponseError)))
    return not isinstance(exc, PaymasterError)


@dataclass
class RunCharges:
    """What one task has used so far: tokens as the providers reported them, and the ledger totals."""

    usage: Usage = field(default_factory=Usage)
    totals: Totals = field(default_factory=Totals)


@dataclass
class CallContext:
    """Who a call is for: the task, the accounts it must fit, its policies and running totals."""

    task_id: str
    agent: str
    tenant: str
    accounts: Sequence[str]
    retry_account: str | None  # None: the budget caps no retries, so they hold on the task's accounts only
    charges: RunCharges
    baseline: ModelPrices | None
    policies: Sequence[CapPolicy] = (CapPolicy.HALT,)
    approver: Approver | None = None
    on_pause: Callable[[bool], object] | None = None
    cache: Cache | None = None
    agent_version: str = ""
    started: float = field(default_factory=time.monotonic)  # orders the task's calls when they wait for room
    auto_max_tokens: bool = False  # size max_tokens from observed replies (Agent.max_tokens = "auto")
    observers: Sequence[Observer] = ()
    view: TaskView | None = None
    usd_capped: bool = True  # some account of the chain caps dollars (a model's first call then goes alone)
    role: str | None = None  # the agent's role, for tool policies
    budget_usd: Decimal | None = None  # the task's USD budget, for tool policies
    tool_use: dict[str, tuple[int, int]] = field(default_factory=dict)  # tool -> (calls, picos) in this task


async def ask_person(ctx: CallContext, request: ApprovalRequest) -> bool:
    """Ask the runtime's approver; the task shows ``awaiting_approval`` until it answers."""
    if ctx.approver is None:
        return False
    if ctx.on_pause is not None:
        paused = ctx.on_pause(True)
        if isinstance(paused, Pending):  # the task shows as awaiting approval before anyone is asked
            await wait(paused)
    try:
        return bool(await ctx.approver(request))
    finally:
        if ctx.on_pause is not None:
            ctx.on_pause(False)
