"""Plan admission: estimate a plan's cost range before it runs, and refuse it when it cannot fit."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .._money import fmt_usd, from_picos, to_picos
from ..executors import BudgetGuard, BudgetStop, CallContext, CapPolicy
from ..ledger import Ledger, Refusal
from ..ledger._sql import in_list
from ..planners import Plan
from ..pricing import ModelPrices, PriceBook, expected_cost, prefix_tokens
from ..pricing._tokens import MESSAGE_OVERHEAD_TOKENS, REQUEST_OVERHEAD_TOKENS
from ..providers._types import Message, ModelRequest
from ..router import RouteDecision, Tier

MIN_CACHEABLE_TOKENS = 1024  # the shortest prefix Anthropic and OpenAI will cache


@dataclass(frozen=True)
class Estimate:
    """A plan's cost range (one model call per subtask) and what its accounts have left."""

    low_usd: Decimal | None
    high_usd: Decimal | None
    left_usd: Decimal | None
    account: str | None
    refusal: str | None
    cap_picos: int = 0
    used_picos: int = 0
    calls: int = 1  # the most model calls the plan makes before tools: a cascade's stages each count

    def as_record(self) -> dict[str, Any]:
        """The estimate as JSON-ready strings for the task's plan record."""
        return {k: None if v is None else str(v) for k, v in
                (("low_usd", self.low_usd), ("high_usd", self.high_usd), ("left_usd", self.left_usd))}


async def _tightest(ledger: Ledger, accounts: Sequence[str]) -> tuple[str, int, int] | None:
    """The capped account with the least room: its id, cap and what is spent or reserved."""
    if not accounts:
        return None
    members, params = in_list("a", list(accounts))
    sql = (
        "SELECT id, cap_picos, spent_picos + reserved_picos FROM accounts"
        f" WHERE id IN {members} AND cap_picos IS NOT NULL"
    )
    rows = await ledger.sql.run(lambda tx: list(tx.execute(sql, params).fetchall()))
    if not rows:
        return None
    account, cap, used = min(rows, key=lambda r: int(r[1]) - int(r[2]))
    return str(account), int(cap), int(used)


def stages(decision: RouteDecision) -> tuple[Tier, ...]:
    """Every tier a decision may call: a cascade's answer, check and escalation stages, else its one tier."""
    cascade = decision.cascade
    return (decision.tier,) if cascade is None else (cascade.answer, cascade.check, cascade.escalate)


async def admit(
    ledger: Ledger,
    prices: PriceBook,
    accounts: Sequence[str],
    plan: Plan,
    decisions: Mapping[str, RouteDecision],
    instructions: str,
) -> Estimate:
    """Estimate ``plan``'s cost range and compare its upper bound with the tightest account's room."""
    low = high = Decimal(0)
    known = True
    by_id = {s.id: s for s in plan.subtasks}
    cached: set[tuple[str, str]] = set()  # models whose copy of the system prompt is already cached
    calls = sum(len(stages(decisions[s.id])) for s in plan.subtasks)
    for s in plan.subtasks:
        route = stages(decisions[s.id])
        if any(prices.get(t.provider, t.model) is None for t in route):
            known = False
            break
        fixed = REQUEST_OVERHEAD_TOKENS + 2 * MESSAGE_OVERHEAD_TOKENS
        # A dependency's output comes from one of its stages: the longest it may be.
        context_tokens = sum(max(t.max_tokens for t in stages(decisions[d])) for d in s.depends_on if d in by_id)
        bound = len(instructions.encode()) + len(s.goal.encode()) + fixed + context_tokens
        # A cascade may run every stage (answer, check, escalation); the low end counts the two that always run.
        for number, tier in enumerate(route):
            model_prices = prices.get(tier.provider, tier.model)
            assert model_prices is not None
            high += model_prices.worst_case(bound, tier.max_tokens)
            if calls == 1 or (len(route) > 1 and number == len(route) - 1):
                continue  # a one-call plan is checked exactly by its reservation; an escalation may not run
            low += _expected_low(model_prices, tier, instructions, s.goal, cached)
    # A one-call plan is checked exactly by its call's reservation: no read needed.
    if calls == 1:
        known_low = None  # not estimated: see above
        return Estimate(known_low, high if known else None, None, None, None)
    tight = await _tightest(ledger, accounts)
    if tight is None:
        return Estimate(low if known else None, high if known else None, None, None, None, calls=calls)
    account, cap, used = tight
    left = max(cap - used, 0)
    if not known:
        return Estimate(None, None, from_picos(left), account, None, cap, used, calls)
    refusal = None
    if to_picos(high) > left:
        refusal = (
            f"plan admission: the plan may cost up to {fmt_usd(high)} (at least {fmt_usd(low)}), more than the "
            f"{fmt_usd(from_picos(left))} left on account {account}"
        )
    return Estimate(low, high, from_picos(left), account, refusal, cap, used, calls)


def _expected_low(
    model_prices: ModelPrices, tier: Tier, instructions: str, goal: str, cached: set[tuple[str, str]]
) -> Decimal:
    """The least one call may cost: its prompt at the tokenizer's count, one output token.

    It counts the expected prompt-cache read: the second call to a model with the
    same long system prompt reads it from the provider's cache at the discounted rate.
    """
    request = ModelRequest(model=tier.model, system=instructions, max_tokens=tier.max_tokens,
                           messages=(Message(role="user", content=goal),))
    prefix = prefix_tokens(request)
    key = (tier.provider, tier.model)
    if prefix < MIN_CACHEABLE_TOKENS:
        return expected_cost(model_prices, request, output_tokens=1)
    if key in cached:
        return expected_cost(model_prices, request, cached_prefix_tokens=prefix, output_tokens=1)
    cached.add(key)
    return expected_cost(model_prices, request, cache_write_tokens=prefix, output_tokens=1)


async def enforce_admission(
    ledger: Ledger,
    guard: BudgetGuard,
    ctx: CallContext,
    plan: Plan,
    estimate: Estimate,
    policies: set[CapPolicy],
) -> None:
    """Let a plan run, ask the approver about it, or stop the task (raising BudgetStop) with a refused row."""
    # A one-call plan is checked exactly by its call's reservation; admission
    # matters when a plan would run out of money part-way.
    if estimate.refusal is None or estimate.account is None or estimate.calls < 2:
        return
    needed = to_picos(estimate.high_usd or Decimal(0))
    if CapPolicy.APPROVE in policies:
        refusal = Refusal(estimate.account, "usd", estimate.cap_picos, estimate.used_picos, needed)
        if await guard.ask_approval(ctx, refusal, estimate.refusal):
            return
    elif policies - {CapPolicy.HALT}:
        return  # downgrade and truncate adapt each call as it comes
    guard.record(ctx, {
        "task_id": ctx.task_id, "kind": "plan", "status": "refused", "error": estimate.refusal,
        "cost_picos": 0, "reserved_picos": needed, "created_at": time.time(), "note": "plan admission",
    })
    raise BudgetStop(estimate.refusal)


def plan_record(
    plan: Plan, decisions: Mapping[str, RouteDecision], estimate: Mapping[str, Any]
) -> dict[str, Any]:
    """The plan as the ledger keeps it: each subtask with its tier and why, and the cost estimate."""
    return {
        "subtasks": [
            {**s.model_dump(mode="json"), "tier": decisions[s.id].tier.name, "reason": decisions[s.id].reason}
            for s in plan.subtasks
        ],
        "estimate": dict(estimate),
    }

