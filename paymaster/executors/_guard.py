"""The budget guard: reserve the worst case, call, settle the actual cost, record the step.

Every model call and tool call of a task goes through ``BudgetGuard``: no call
is made that every account of the task's chain cannot pay for. Recording the
steps and queuing the settlements is its base class's part (``_settlements``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import anyio
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from .._money import to_picos
from ..errors import ConfigurationError
from ..ledger import Alert, Charge, Ledger, Refusal, Reservation
from ..pricing import ModelPrices, PriceBook, bound_prompt_tokens
from ..providers._types import ModelRequest, ModelResponse, Provider
from ..router import Tier, TierTable, same_model
from ._cached import cache_key, cache_lookup, cache_store, describe_hit, hit_response
from ._context import BudgetStop, CallContext, ModelRejected, ask_person, may_have_billed
from ._lengths import ReplyLengths
from ._policy import ApprovalRequest, CapPolicy, describe_refusal, downgrade, truncate_to_fit
from ._rates import RatedReserver, RateGate
from ._retry import RetryPolicy, is_retryable
from ._served import ServedModels
from ._settlements import Settlements
from ._toolcheck import check_tool_policy
from ._tools import Tool
from ._turns import Turns
from ._waiting import Reserver


class BudgetGuard(Settlements):
    """Runs model and tool calls under the ledger's reservations, with retries and cap policies."""

    def __init__(
        self,
        ledger: Ledger,
        prices: PriceBook,
        tiers: TierTable,
        provider_for: Callable[[Tier], Provider],
        retry: RetryPolicy | None = None,
        budget_wait: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rates: RateGate | None = None,
    ) -> None:
        if budget_wait < 0:
            raise ConfigurationError(f"budget_wait is seconds >= 0, got {budget_wait}")
        self.budget_wait = budget_wait
        self.ledger = ledger
        self.prices = prices
        self.tiers = tiers
        self.provider_for = provider_for
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.reserver = Reserver(ledger, budget_wait) if rates is None else RatedReserver(ledger, budget_wait, rates)
        self.lengths = ReplyLengths(ledger)
        self._probed: set[tuple[str, str]] = set()  # (provider, model) whose served model an answer showed
        self._probes: dict[tuple[str, str], anyio.Lock] = {}
        self.served = ServedModels(ledger, prices)
        self.turns = Turns()  # CPU-heavy sections take turns, so that a burst never deafens the loop

    def worst_case(
        self, provider: str, request: ModelRequest, prices: ModelPrices | None
    ) -> tuple[Decimal | None, int]:
        """The most ``request`` can cost and how many tokens it can use: the hold it needs."""
        return self.served.worst_case(provider, request, prices)

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
        await self.turns.take()
        cached = None
        if ctx.cache is not None:
            cached = cache_key(ctx.tenant, ctx.agent, ctx.agent_version, tier.name, kind, request)
        if cached is not None and ctx.cache is not None:
            hit = await cache_lookup(ctx.cache, *cached)
            if hit is not None:
                saved = to_picos(hit.cost_usd)
                self.record(ctx, {
                    "task_id": ctx.task_id, "subtask_id": subtask_id, "kind": "cache_hit", "status": "ok",
                    "provider": "cache", "model": request.model, "tier": tier.name, "cost_picos": 0,
                    "saved_picos": saved, "note": describe_hit(hit), "created_at": time.time(),
                })
                return hit_response(hit, request)
        limit = None
        if ctx.auto_max_tokens and request.max_tokens == tier.max_tokens:
            limit = await self.lengths.limit((ctx.agent, kind, tier.name), tier.max_tokens)
        asked = request if limit is None else request.model_copy(update={"max_tokens": limit})
        probe = (tier.provider, asked.model)
        answered: tuple[ModelResponse, bool, Decimal | None] | None = None
        if probe not in self._probed and ctx.usd_capped:
            # Until a model's first answer says which model really serves it, its capped calls go one
            # at a time: a provider that serves a pricier model can then pass a cap by one call's
            # difference, not by that of every call already in flight.
            async with self._probes.setdefault(probe, anyio.Lock()):
                if probe not in self._probed:
                    answered = await self._retrying(ctx, tier, asked, kind=kind, subtask_id=subtask_id, note=note)
                    self._probed.add(probe)
        if answered is None:
            answered = await self._retrying(ctx, tier, asked, kind=kind, subtask_id=subtask_id, note=note)
        response, adjusted, cost = answered
        if limit is not None and response.finish_reason in ("length", "max_tokens"):
            # Cut at the learned limit: ask again with the tier's maximum (the cut reply is paid for).
            response, adjusted, cost = await self._retrying(
                ctx, tier, request, kind=kind, subtask_id=subtask_id,
                note=f"asked again with max_tokens {request.max_tokens}: the reply was cut at {limit}",
            )
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
        try:
            return await self._fitted_call(ctx, tier, request, kind=kind, subtask_id=subtask_id, note=note, attempt=1)
        except BudgetStop:
            raise
        except BaseException as exc:
            if self.retry.max_attempts <= 1 or not is_retryable(exc):
                raise
            first_error = exc
        # Only a failed first attempt pays for building the retry loop: tenacity sees that failure
        # as its own attempt 1 (re-raised below), so its wait and stop rules count attempts as before.
        attempt = 0
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.max_attempts),
            wait=self.retry.wait,
            retry=retry_if_exception(is_retryable),
            sleep=self.sleep,
            reraise=True,
        )
        last_error: BaseException | None = None
        async for state in retrying:
            with state:
                attempt += 1
                if attempt == 1:
                    last_error = first_error
                    raise first_error
                try:
                    return await self._fitted_call(
                        ctx, tier, request, kind="retry", subtask_id=subtask_id, note=note, attempt=attempt,
                    )
                except BudgetStop as stop:
                    if last_error is not None:
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
        accounts = list(ctx.accounts) + ([ctx.retry_account] if kind == "retry" and ctx.retry_account else [])
        policies = list(ctx.policies)
        adjusted = False
        while True:
            provider = self.provider_for(tier)
            prices = self.prices.get(tier.provider, tier.model)
            worst, tokens = self.served.worst_case(tier.provider, request, prices)
            held = Charge(picos=0 if worst is None else to_picos(worst), tokens=tokens, calls=1)
            step: dict[str, Any] = {
                "task_id": ctx.task_id, "subtask_id": subtask_id, "kind": kind, "provider": provider.name,
                "model": request.model, "request_model": request.model, "tier": tier.name, "attempt": attempt,
                "note": note,
                "reserved_picos": held.picos, "created_at": time.time(),
            }
            reservation = await self.reserver.reserve(
                ctx, accounts, held, kind, subtask_id, provider.name, request.model, tier.name
            )
            if not isinstance(reservation, Refusal):
                sent = await self._send(ctx, provider, prices, tier, request, reservation, held, step)
                return sent[0], adjusted, sent[1]
            reason = describe_refusal(reservation)
            self.record(ctx, {**step, "status": "refused", "error": reason, "cost_picos": 0})
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

    async def ask_approval(self, ctx: CallContext, refusal: Refusal, reason: str) -> bool:
        """Ask the approver for room on the refusing account; on yes, its cap grows by the shortfall."""
        if ctx.approver is None:
            return False
        request = ApprovalRequest(
            task_id=ctx.task_id, agent=ctx.agent, tenant=ctx.tenant, account=refusal.account,
            dimension=refusal.dimension, cap=refusal.cap, used=refusal.used, needed=refusal.needed, reason=reason,
        )
        approved = await ask_person(ctx, request)
        if approved:
            await anyio.to_thread.run_sync(
                self.ledger.accounts.raise_cap, refusal.account, refusal.dimension, request.shortfall
            )
        return bool(approved)

    async def _send(
        self,
        ctx: CallContext,
        provider: Provider,
        prices: ModelPrices | None,
        tier: Tier,
        request: ModelRequest,
        reservation: Reservation,
        held: Charge,
        step: dict[str, Any],
    ) -> tuple[ModelResponse, Decimal | None]:
        started = time.perf_counter()
        try:
            response = await provider.complete(request)
            await self.turns.take(shielded=True)  # the reply is settled whatever happens meanwhile
        except BaseException as exc:
            latency = (time.perf_counter() - started) * 1000
            billed = may_have_billed(exc)
            spent = held if billed else Charge(calls=1)  # an attempt counts as a call, paid or not
            served = getattr(exc, "served_model", None)
            if billed and served and not same_model(served, request.model):
                # An unreadable answer that names a pricier model is charged at that model's worst case.
                served_prices = self.prices.get(tier.provider, served)
                if served_prices is not None:
                    worst = to_picos(served_prices.worst_case(bound_prompt_tokens(request), request.max_tokens))
                    spent = Charge(picos=max(held.picos, worst), tokens=held.tokens, calls=1)
                    if worst > held.picos:
                        self.served.remember(ctx, tier.provider, request.model, served, 0)
                    step["model"] = served
            error = f"{type(exc).__name__}: {exc}" if isinstance(exc, Exception) else "call cancelled mid-flight"
            # Queuing the settlement is synchronous, so a pending cancellation cannot cut it short.
            self._settle(
                ctx, reservation, spent,
                {**step, "status": "unsettled" if billed else "error", "error": error,
                 "cost_picos": spent.picos, "latency_ms": latency,
                 "request_id": getattr(exc, "request_id", None),
                 "note": "charged at its worst case: the request may have reached the provider, which may have "
                         "billed it" if billed else step["note"]},
            )
            raise
        latency = (time.perf_counter() - started) * 1000
        usage = response.usage
        priced = self.served.price(ctx, tier, request, response, prices, held)
        served, cost, cost_picos, alerts = priced.served, priced.cost, priced.cost_picos, priced.alerts
        step["model"] = served
        notes = [step["note"]] if step["note"] else []
        notes += priced.notes
        rejected = not tier.accepted(served)
        if rejected:
            notes.append(f"tier {tier.name!r} does not accept {served}")
        baseline = ctx.baseline.cost(usage) if ctx.baseline is not None else None
        self._settle(
            ctx, reservation,
            Charge(picos=cost_picos or 0, tokens=usage.total_tokens, calls=1),
            {
                **step, "status": "ok", "latency_ms": latency, "note": "; ".join(notes) or None,
                "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                "cache_read_tokens": usage.cache_read_tokens, "cache_write_tokens": usage.cache_write_tokens,
                "cost_picos": cost_picos, "baseline_picos": None if baseline is None else to_picos(baseline),
                "request_id": getattr(response, "request_id", None),
            },
        )
        ctx.charges.usage = ctx.charges.usage + usage
        self.lengths.observe((ctx.agent, step["kind"], tier.name), usage.output_tokens)
        if rejected:
            reason = (f"model_rejected: tier {tier.name!r} asked for {request.model} and was served {served}, "
                      f"which it does not accept (accepts {list(tier.accepts) or [tier.model]})")
            alerts.append(Alert(f"tier:{tier.name}", "model", 0.0, cost_picos or 0, 0, kind="model_rejected",
                                message=reason))
        for alert in alerts:
            self._alert(alert)
        if rejected:
            raise ModelRejected(reason)
        return response, cost

    async def tool(self, ctx: CallContext, tool: Tool, arguments: dict[str, Any], *, subtask_id: str | None) -> str:
        """Run a tool call if its policy allows it and the budget has room (and for its price); record it.

        A call its policy refuses (or that a person did not approve) is a ledger row saying why, and the
        model gets the refusal as the tool's answer.
        """
        held = Charge(picos=0 if tool.price_usd is None else to_picos(tool.price_usd), tool_calls=1)
        step: dict[str, Any] = {
            "task_id": ctx.task_id, "subtask_id": subtask_id, "kind": "tool", "provider": "tool",
            "model": tool.name, "request_model": tool.name, "reserved_picos": held.picos, "created_at": time.time(),
        }
        refused = await check_tool_policy(ctx, tool)
        if refused is not None:
            self.record(ctx, {**step, "status": "refused", "error": refused, "cost_picos": 0})
            return f"refused: {refused}"
        calls, spent = ctx.tool_use.get(tool.name, (0, 0))
        ctx.tool_use[tool.name] = (calls + 1, spent + held.picos)
        reservation = await self.reserver.reserve(ctx, ctx.accounts, held, "tool", subtask_id, "tool", tool.name, None)
        if isinstance(reservation, Refusal):
            reason = describe_refusal(reservation)
            self.record(ctx, {**step, "status": "refused", "error": reason, "cost_picos": 0})
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
            self._settle(
                ctx, reservation, held,
                {**step, "status": "error", "error": "tool call cancelled", "cost_picos": held.picos},
            )
            raise
        else:
            status, error = "ok", None
        self._settle(
            ctx, reservation, held,
            # baseline: the deepest tier would have called the same tool at the same price.
            {**step, "status": status, "error": error, "cost_picos": held.picos, "baseline_picos": held.picos,
             "latency_ms": (time.perf_counter() - started) * 1000},
        )
        return result
