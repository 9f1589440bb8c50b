"""The budget guard: reserve the worst case, call, settle the actual cost, record the step."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .._money import fmt_usd, from_picos, to_picos
from ..errors import ProviderTimeoutError
from ..ledger import Charge, Ledger, Refusal
from ..pricing import ModelPrices, PriceBook, bound_prompt_tokens
from ..providers._types import ModelRequest, ModelResponse, Provider, Usage
from ..router import Tier

_DIMENSION_UNITS = {"usd": "", "tokens": " tokens", "calls": " model calls"}


class BudgetStop(Exception):
    """Raised inside a run when a call does not fit a budget; the run ends with budget_exceeded."""

    def __init__(self, reason: str, refusal: Refusal) -> None:
        super().__init__(reason)
        self.reason = reason
        self.refusal = refusal


def describe_refusal(refusal: Refusal) -> str:
    """A sentence saying which cap refused a call and by how much."""
    if refusal.dimension == "usd":
        cap, used, need = (fmt_usd(from_picos(v)) for v in (refusal.cap, refusal.used, refusal.needed))
    else:
        cap, used, need = str(refusal.cap), str(refusal.used), str(refusal.needed)
    unit = _DIMENSION_UNITS[refusal.dimension]
    return (
        f"{refusal.dimension} cap of account {refusal.account} reached: the call's worst case of {need}{unit} "
        f"does not fit ({used}{unit} of {cap}{unit} already spent or reserved)"
    )


@dataclass
class RunCharges:
    """What one task has spent so far, as its calls settle."""

    usage: Usage = field(default_factory=Usage)
    cost_picos: int = 0
    unpriced: int = 0
    calls: int = 0


@dataclass
class CallContext:
    """Who a call is for: the task, the budget accounts it must fit, and its running totals."""

    task_id: str
    accounts: Sequence[str]
    charges: RunCharges
    baseline: ModelPrices | None


class BudgetGuard:
    """Runs model calls under the ledger's reservations."""

    def __init__(self, ledger: Ledger, prices: PriceBook, provider_for: Callable[[Tier], Provider]) -> None:
        self.ledger = ledger
        self.prices = prices
        self.provider_for = provider_for

    async def call(
        self,
        ctx: CallContext,
        tier: Tier,
        request: ModelRequest,
        *,
        kind: str = "execute",
        subtask_id: str | None = None,
        attempt: int = 1,
        note: str | None = None,
    ) -> ModelResponse:
        """Make one model call if every account can pay its worst case; record it either way."""
        provider = self.provider_for(tier)
        prices = self.prices.get(tier.provider, tier.model)
        bound_in = bound_prompt_tokens(request)
        worst_usd = prices.worst_case(bound_in, request.max_tokens) if prices is not None else None
        held = Charge(
            picos=0 if worst_usd is None else to_picos(worst_usd),
            tokens=bound_in + request.max_tokens,
            calls=1,
        )
        step = {
            "task_id": ctx.task_id, "subtask_id": subtask_id, "kind": kind, "provider": provider.name,
            "model": request.model, "tier": tier.name, "attempt": attempt, "note": note,
            "reserved_picos": held.picos, "created_at": time.time(),
        }
        reservation = self.ledger.reserve(
            ctx.accounts, held, task_id=ctx.task_id, kind=kind, subtask_id=subtask_id,
            provider=provider.name, model=request.model, tier=tier.name,
        )
        if isinstance(reservation, Refusal):
            reason = describe_refusal(reservation)
            self.ledger.record_step({**step, "status": "refused", "error": reason, "cost_picos": 0})
            raise BudgetStop(reason, reservation)

        started = time.perf_counter()
        try:
            response = await provider.complete(request)
        except BaseException as exc:
            latency = (time.perf_counter() - started) * 1000
            # A timed-out call may still have been billed: count its worst case,
            # so spend can be over-stated but never under-stated.
            billed = isinstance(exc, ProviderTimeoutError)
            spent = held if billed else Charge()
            error = f"{type(exc).__name__}: {exc}" if isinstance(exc, Exception) else (
                f"{type(exc).__name__}: call interrupted"
            )
            self.ledger.settle(
                reservation, spent,
                {**step, "status": "unsettled" if billed else "error", "error": error,
                 "cost_picos": spent.picos, "latency_ms": latency,
                 "note": "charged at its worst case: the provider may have billed it" if billed else note},
            )
            ctx.charges.cost_picos += spent.picos
            ctx.charges.calls += 1
            raise
        latency = (time.perf_counter() - started) * 1000
        usage = response.usage
        cost = prices.cost(usage) if prices is not None else None
        baseline = ctx.baseline.cost(usage) if ctx.baseline is not None else None
        cost_picos = None if cost is None else to_picos(cost)
        self.ledger.settle(
            reservation,
            Charge(picos=cost_picos or 0, tokens=usage.total_tokens, calls=1),
            {
                **step, "status": "ok", "latency_ms": latency,
                "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                "cache_read_tokens": usage.cache_read_tokens, "cache_write_tokens": usage.cache_write_tokens,
                "cost_picos": cost_picos, "baseline_picos": None if baseline is None else to_picos(baseline),
            },
        )
        ctx.charges.usage = ctx.charges.usage + usage
        ctx.charges.calls += 1
        if cost_picos is None:
            ctx.charges.unpriced += 1
        else:
            ctx.charges.cost_picos += cost_picos
        return response

