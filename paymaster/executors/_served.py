"""What served a call: the model a response names, the prices that apply, and what a tier has been seen to do.

A provider may answer with another model than the one asked for (an alias
resolving to a pricier snapshot, a gateway substituting one), or return more
output than ``max_tokens`` allows. Each call is priced at the model that
served it; a pricier model or a longer reply is remembered durably in the
ledger, and every later hold for that requested model covers it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from .._money import fmt_usd, from_picos, to_picos
from ..ledger import Alert, Charge, Ledger
from ..pricing import ModelPrices, PriceBook, bound_prompt_tokens
from ..providers._types import ModelRequest, ModelResponse
from ..router import Tier, same_model
from ._context import CallContext


@dataclass
class Priced:
    """A response priced at the model that served it, with what is worth noting or alerting."""

    served: str
    cost: Decimal | None
    cost_picos: int | None
    notes: list[str] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)


class ServedModels:
    """Per (provider, requested model): the models seen serving it and the longest reply past its limit."""

    def __init__(self, ledger: Ledger, prices: PriceBook) -> None:
        self.ledger = ledger
        self.prices = prices
        self._seen: dict[tuple[str, str], dict[str, int]] = ledger.served_models()

    def worst_case(
        self, provider: str, request: ModelRequest, prices: ModelPrices | None
    ) -> tuple[Decimal | None, int]:
        """The most ``request`` can cost and how many tokens it can use: the hold it needs.

        Input is bounded by the prompt's bytes plus overhead; output by
        ``max_tokens``, or by the longest reply this model has been seen to give
        past its limit. The price is the priciest of the requested model and
        every model the provider has been seen to serve in its place.
        """
        bound_in = bound_prompt_tokens(request)
        seen = self._seen.get((provider, request.model), {})
        bound_out = max([request.max_tokens, *seen.values()])
        if prices is None:
            return None, bound_in + bound_out
        worst = prices.worst_case(bound_in, bound_out)
        for model in seen:
            other = self.prices.get(provider, model)
            if other is not None:
                worst = max(worst, other.worst_case(bound_in, bound_out))
        return worst, bound_in + bound_out

    def remember(self, ctx: CallContext, provider: str, requested: str, served: str, output_tokens: int) -> bool:
        """Note a surprising served model or reply length, durably; True when it is news."""
        seen = self._seen.setdefault((provider, requested), {})
        if served in seen and seen[served] >= output_tokens:
            return False
        seen[served] = max(seen.get(served, 0), output_tokens)
        self.ledger.watch(ctx.task_id, self.ledger.remember_served(provider, requested, served, output_tokens))
        return True

    def price(
        self, ctx: CallContext, tier: Tier, request: ModelRequest, response: ModelResponse,
        prices: ModelPrices | None, held: Charge,
    ) -> Priced:
        """Price ``response`` at the model that served it; note and remember what was surprising."""
        usage = response.usage
        served = response.model or request.model
        priced = Priced(served, prices.cost(usage) if prices is not None else None, None)
        if served != request.model:
            served_prices = self.prices.get(tier.provider, served)
            if served_prices is not None:
                served_cost = served_prices.cost(usage)
                cost = priced.cost
                pricier = cost is not None and served_cost > cost and not same_model(served, request.model)
                if pricier and self.remember(ctx, tier.provider, request.model, served, 0):
                    priced.alerts.append(Alert(
                        f"tier:{tier.name}", "model", 0.0, to_picos(served_cost), 0, kind="served_model",
                        message=f"tier {tier.name!r} asked {tier.provider} for {request.model} and was served "
                                f"{served}, which costs more ({fmt_usd(served_cost)} instead of "
                                f"{fmt_usd(cost or Decimal(0))} for this call); calls on this tier now reserve "
                                f"for {served}",
                    ))
                priced.cost = served_cost
            elif not same_model(served, request.model):
                # Nobody knows what the served model costs (a local server names its weights file, a
                # gateway its own alias): price it as the model asked for, and say so once.
                priced.notes.append(f"served by {served}, whose price is unknown: priced as {request.model}")
                if self.remember(ctx, tier.provider, request.model, served, 0):
                    priced.alerts.append(Alert(
                        f"tier:{tier.name}", "model", 0.0, 0, 0, kind="served_model",
                        message=f"tier {tier.name!r} asked {tier.provider} for {request.model} and was served "
                                f"{served}, whose price is unknown; it is priced as {request.model}: add "
                                f"[prices.\"{tier.provider}/{served}\"] if it costs more",
                    ))
        priced.cost_picos = None if priced.cost is None else to_picos(priced.cost)
        if priced.cost_picos is not None and priced.cost_picos > held.picos:
            priced.notes.append(
                f"cost {fmt_usd(priced.cost)} is above the reserved worst case {fmt_usd(from_picos(held.picos))}"
            )
        if usage.output_tokens > request.max_tokens:
            priced.notes.append(f"the provider returned {usage.output_tokens} output tokens, past max_tokens "
                                f"{request.max_tokens}")
            if self.remember(ctx, tier.provider, request.model, served, usage.output_tokens):
                priced.alerts.append(Alert(
                    f"tier:{tier.name}", "tokens", 0.0, usage.output_tokens, request.max_tokens,
                    kind="max_tokens_ignored",
                    message=f"{tier.provider}/{served} ignored max_tokens={request.max_tokens} and returned "
                            f"{usage.output_tokens} output tokens; calls on tier {tier.name!r} now reserve for that",
                ))
        return priced
