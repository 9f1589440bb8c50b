"""The budget guard: reserve the worst case, call, settle the actual cost, record the step.

Every model call and tool call of a task goes through ``BudgetGuard``: no call
is made that every account of the task's chain cannot pay for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import anyio
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from .._money import to_picos
from ..errors import ConfigurationError, MalformedResponseError, ProviderTimeoutError
from ..ledger import Charge, Ledger, Refusal, Reservation
from ..pricing import ModelPrices, PriceBook, bound_prompt_tokens
from ..providers._types import ModelRequest, ModelResponse, Provider, Usage
from ..router import Tier, TierTable
from ._cached import Cache, cache_key, cache_lookup, cache_store, describe_hit, hit_response
from ._policy import ApprovalRequest, Approver, CapPolicy, describe_refusal, downgrade, truncate_to_fit
from ._retry import RetryPolicy, is_retryable
from ._tools import Tool


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


@dataclass
class RunCharges:
    """Tokens one task has used so far (money and call totals live in the ledger, summed at finish)."""

    usage: Usage = field(default_factory=Usage)


@dataclass
class CallContext:
    """Who a call is for: the task, the accounts it must fit, its policies and running totals."""

    task_id: str
    agent: str
    tenant: str
    accounts: Sequence[str]
    retry_account: str
    charges: RunCharges
    baseline: ModelPrices | None
    policies: Sequence[CapPolicy] = (CapPolicy.HALT,)
    approver: Approver | None = None
    on_pause: Callable[[bool], None] | None = None
    cache: Cache | None = None
    agent_version: str = ""


class BudgetGuard:
    """Runs model and tool calls under the ledger's reservations, with retries and cap policies."""

    def __init__(
        self,
        ledger: Ledger,
        prices: PriceBook,
        tiers: TierTable,
        provider_for: Callable[[Tier], Provider],
        retry: RetryPolicy | None = None,
        budget_wait: float = 30.0,
    ) -> None:
        if budget_wait < 0:
            raise ConfigurationError(f"budget_wait is seconds >= 0, got {budget_wait}")
        self.budget_wait = budget_wait
        self.ledger = ledger
        self.prices = prices
        self.tiers = tiers
        self.provider_for = provider_for
        self.retry = retry or RetryPolicy()

    async def call(
        self,
        ctx: CallContext,
        tier: Tier,
        request: ModelRequest,
        *,
        kind: str = "execute",
        subtask_id: str | None = None,
        note: str | None = None,
    ) -> ModelResponse:
        """Make a model call (or serve it from the cache), retrying retryable failures within the retry budget."""
        cached = None
        if ctx.cache is not None:
            cached = cache_key(ctx.tenant, ctx.agent, ctx.agent_version, tier.name, kind, request)
        if cached is not None and ctx.cache is not None:
            hit = await cache_lookup(ctx.cache, *cached)
            if hit is not None:
                saved = to_picos(hit.cost_usd)
                self.ledger.record_step({
                    "task_id": ctx.task_id, "subtask_id": subtask_id, "kind": "cache_hit", "status": "ok",
                    "provider": "cache", "model": request.model, "tier": tier.name, "cost_picos": 0,
                    "saved_picos": saved, "note": describe_hit(hit), "created_at": time.time(),
                })
                return hit_response(hit, request)
        response, adjusted, cost = await self._retrying(ctx, tier, request, kind=kind, subtask_id=subtask_id,
                                                        note=note)
        if cached is not None and ctx.cache is not None and not adjusted and cost is not None:
            await cache_store(ctx.cache, cached[0], cached[1], response, cost)
        return response

    async def _retrying(
        self,
        ctx: CallContext,
        tier: Tier,
        request: ModelRequest,
        *,
        kind: str,
        subtask_id: str | None,
        note: str | None,
    ) -> tuple[ModelResponse, bool, Decimal | None]:
        attempt = 0
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.max_attempts),
            wait=self.retry.wait,
            retry=retry_if_exception(is_retryable),
            sleep=anyio.sleep,
            reraise=True,
        )
        last_error: BaseException | None = None
        async for state in retrying:
            with state:
                attempt += 1
                try:
                    return await self._fitted_call(
                        ctx, tier, request, kind=kind if attempt == 1 else "retry",
                        subtask_id=subtask_id, note=note, attempt=attempt,
                    )
                except BudgetStop as stop:
                    if attempt > 1 and last_error is not None:
                        raise BudgetStop(
                            f"{stop.reason}; gave up retrying after {type(last_error).__name__}: {last_error}",
                            stop.refusal,
                        ) from last_error
                    raise
                except BaseException as exc:
                    last_error = exc
                    raise
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def _fitted_call(
        self,
        ctx: CallContext,
        tier: Tier,
        request: ModelRequest,
        *,
        kind: str,
        subtask_id: str | None,
        note: str | None,
        attempt: int,
    ) -> tuple[ModelResponse, bool, Decimal | None]:
        """One attempt, after the agent's cap policies made it fit: response, whether they changed it, cost."""
        accounts = list(ctx.accounts) + ([ctx.retry_account] if kind == "retry" else [])
        policies = list(ctx.policies)
        adjusted = False
        while True:
            provider = self.provider_for(tier)
            prices = self.prices.get(tier.provider, tier.model)
            bound_in = bound_prompt_tokens(request)
            worst = prices.worst_case(bound_in, request.max_tokens) if prices is not None else None
            held = Charge(picos=0 if worst is None else to_picos(worst), tokens=bound_in + request.max_tokens, calls=1)
            step: dict[str, Any] = {
                "task_id": ctx.task_id, "subtask_id": subtask_id, "kind": kind, "provider": provider.name,
                "model": request.model, "tier": tier.name, "attempt": attempt, "note": note,
                "reserved_picos": held.picos, "created_at": time.time(),
            }
            reservation = await self._reserve(ctx, accounts, held, kind, subtask_id, provider.name, request.model,
                                              tier.name)
            if not isinstance(reservation, Refusal):
                sent = await self._send(ctx, provider, prices, tier.provider, request, reservation, held, step)
                return sent[0], adjusted, sent[1]
            reason = describe_refusal(reservation)
            self.ledger.record_step({**step, "status": "refused", "error": reason, "cost_picos": 0})
            if reservation.dimension == "killed":
                raise BudgetStop(reason, reservation)
            # Try the agent's policies in order; a policy that cannot help passes to the next.
            while policies:
                policy = policies[0]
                if policy is CapPolicy.DOWNGRADE:
                    cheaper = downgrade(self.tiers, tier, request)
                    if cheaper is not None:
                        adjusted = True
                        note = f"downgraded from {tier.name} to {cheaper[0].name}: {reservation.dimension} cap"
                        tier, request = cheaper
                        break
                elif policy is CapPolicy.TRUNCATE:
                    shorter = truncate_to_fit(request, reservation, prices)
                    if shorter is not None:
                        adjusted = True
                        note = f"context truncated to fit the {reservation.dimension} cap"
                        request = shorter
                        break
                elif (
                    policy is CapPolicy.APPROVE and ctx.approver is not None
                    and await self.ask_approval(ctx, reservation, reason)
                ):
                    note = f"approved: {reservation.account} {reservation.dimension} cap raised"
                    break
                policies.pop(0)
            else:
                raise BudgetStop(reason, reservation)

    async def _reserve(
        self, ctx: CallContext, accounts: Sequence[str], held: Charge, kind: str, subtask_id: str | None,
        provider: str, model: str, tier: str,
    ) -> Reservation | Refusal:
        """Reserve; while the only obstacle is other calls' in-flight holds, wait for them to settle.

        Holding every call's worst case means a busy account can look full while
        little is spent. Such a refusal is transient: the call waits (up to
        ``budget_wait`` seconds) instead of failing, and still never overspends.
        """
        deadline = time.monotonic() + self.budget_wait
        next_recovery = time.monotonic() + 1.0
        pause = 0.005
        while True:
            reservation = self.ledger.reserve(
                accounts, held, task_id=ctx.task_id, kind=kind, subtask_id=subtask_id,
                provider=provider, model=model, tier=tier,
            )
            if not isinstance(reservation, Refusal) or not reservation.transient or time.monotonic() >= deadline:
                return reservation
            if time.monotonic() >= next_recovery:
                # The holder may be a process that died mid-call: close its holds at their
                # worst case rather than wait for them forever.
                self.ledger.recover()
                next_recovery = time.monotonic() + 2.0
            await anyio.sleep(pause)
            pause = min(pause * 2, 0.25)

    async def ask_approval(self, ctx: CallContext, refusal: Refusal, reason: str) -> bool:
        """Ask the approver for room on the refusing account; on yes, its cap grows by the shortfall."""
        if ctx.approver is None:
            return False
        request = ApprovalRequest(
            task_id=ctx.task_id, agent=ctx.agent, tenant=ctx.tenant, account=refusal.account,
            dimension=refusal.dimension, cap=refusal.cap, used=refusal.used, needed=refusal.needed, reason=reason,
        )
        if ctx.on_pause is not None:
            ctx.on_pause(True)
        try:
            approved = await ctx.approver(request)
        finally:
            if ctx.on_pause is not None:
                ctx.on_pause(False)
        if approved:
            self.ledger.accounts.raise_cap(refusal.account, refusal.dimension, request.shortfall)
        return bool(approved)

    async def _send(
        self,
        ctx: CallContext,
        provider: Provider,
        prices: ModelPrices | None,
        price_provider: str,
        request: ModelRequest,
        reservation: Reservation,
        held: Charge,
        step: dict[str, Any],
    ) -> tuple[ModelResponse, Decimal | None]:
        started = time.perf_counter()
        try:
            response = await provider.complete(request)
        except BaseException as exc:
            latency = (time.perf_counter() - started) * 1000
            # A call that timed out, was cancelled mid-flight or answered with a body we
            # could not read may still have been billed: count its worst case, so spend
            # is over-stated, never under-stated.
            billed = isinstance(exc, ProviderTimeoutError | MalformedResponseError) or not isinstance(exc, Exception)
            spent = held if billed else Charge(calls=1)  # an attempt counts as a call, paid or not
            error = f"{type(exc).__name__}: {exc}" if isinstance(exc, Exception) else "call cancelled mid-flight"
            # The ledger write is synchronous, so a pending cancellation cannot cut it short.
            self.ledger.settle(
                reservation, spent,
                {**step, "status": "unsettled" if billed else "error", "error": error,
                 "cost_picos": spent.picos, "latency_ms": latency,
                 "note": "charged at its worst case: the provider may have billed it" if billed else step["note"]},
            )
            raise
        latency = (time.perf_counter() - started) * 1000
        usage = response.usage
        if response.model and response.model != request.model:
            # Price what actually served (an alias resolves to a dated snapshot), when it is known.
            served = self.prices.get(price_provider, response.model)
            if served is not None:
                prices = served
            step["model"] = response.model
        cost = prices.cost(usage) if prices is not None else None
        baseline = ctx.baseline.cost(usage) if ctx.baseline is not None else None
        cost_picos = None if cost is None else to_picos(cost)
        if cost_picos is not None and cost_picos > held.picos:
            # Only a provider that counts more tokens than the prompt has bytes gets here;
            # record it rather than hide it.
            step["note"] = f"provider reported usage above the reserved worst case ({usage.input_tokens} input tokens)"
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
        return response, cost

    async def tool(self, ctx: CallContext, tool: Tool, arguments: dict[str, Any], *, subtask_id: str | None) -> str:
        """Run a tool call if the budget has room for one more (and for its price); record it."""
        held = Charge(picos=0 if tool.price_usd is None else to_picos(tool.price_usd), tool_calls=1)
        step: dict[str, Any] = {
            "task_id": ctx.task_id, "subtask_id": subtask_id, "kind": "tool", "provider": "tool",
            "model": tool.name, "reserved_picos": held.picos, "created_at": time.time(),
        }
        reservation = self.ledger.reserve(ctx.accounts, held, task_id=ctx.task_id, kind="tool", subtask_id=subtask_id)
        if isinstance(reservation, Refusal):
            reason = describe_refusal(reservation)
            self.ledger.record_step({**step, "status": "refused", "error": reason, "cost_picos": 0})
            raise BudgetStop(reason, reservation)
        started = time.perf_counter()
        error: str | None = None
        try:
            result = await tool.invoke(arguments)
        except Exception as exc:
            # The tool ran (or started): a paid tool is charged its price either way.
            # Its error goes back to the model as the tool's answer, so it can recover.
            result = f"error: {type(exc).__name__}: {exc}"
            status, error = "error", result
        except BaseException:
            self.ledger.settle(
                reservation, held, {**step, "status": "error", "error": "tool call cancelled", "cost_picos": held.picos}
            )
            raise
        else:
            status, error = "ok", None
        self.ledger.settle(
            reservation, held,
            # baseline: the deepest tier would have called the same tool at the same price.
            {**step, "status": status, "error": error, "cost_picos": held.picos, "baseline_picos": held.picos,
             "latency_ms": (time.perf_counter() - started) * 1000},
        )
        return result
