"""What a Runtime checks before it spends: which provider serves each tier, and that an agent can run at all."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from ..errors import ConfigurationError, PriceUnknownError
from ..executors import CapPolicy
from ..pricing import PriceBook
from ..providers._types import Provider
from ..router import PolicyRouter, Router, ScoreRouter, Tier, TierTable
from ._agent import Agent
from ._budget import Budget

_PROVIDER_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


class Providers:
    """The provider of each tier: one for every tier, one per provider name, or the official SDKs from the env."""

    def __init__(self, provider: Provider | None, providers: Mapping[str, Provider] | None) -> None:
        self._provider = provider
        self._providers = dict(providers or {})
        self._explicit = providers is not None

    def for_tier(self, tier: Tier) -> Provider:
        """The provider that serves ``tier``; a missing one is a clear error."""
        if self._provider is not None:
            return self._provider
        found = self._providers.get(tier.provider)
        if found is not None:
            return found
        env = _PROVIDER_ENV.get(tier.provider)
        if env and os.environ.get(env) and not self._explicit:
            # No providers given: the official SDKs, keyed from the usual environment variables.
            from ..providers import AnthropicProvider, OpenAIProvider

            made: Provider = AnthropicProvider() if tier.provider == "anthropic" else OpenAIProvider()
            self._providers[tier.provider] = made
            return made
        hint = f"set {env}, or " if env else ""
        raise ConfigurationError(
            f"tier {tier.name!r} needs provider {tier.provider!r}, which is not configured: {hint}pass "
            f"Runtime(providers={{{tier.provider!r}: ...}}), or Runtime(provider=ScriptedProvider()) to run offline"
        )

    def opened(self) -> list[Provider]:
        """Every provider in use, each once."""
        return list({id(p): p for p in [self._provider, *self._providers.values()] if p is not None}.values())


def router_tiers(router: Router) -> set[str]:
    """Every tier a calibrated router (thresholds or policy file) may send a subtask to."""
    if isinstance(router, ScoreRouter):
        return set(router.thresholds.tiers)
    if isinstance(router, PolicyRouter):
        return router.policy.tiers()  # every tier and every cascade stage it may send work to
    return set()


def check_router(router: Router, tiers: TierTable, providers: Providers) -> None:
    """Fail at construction if a calibrated router may send work to a tier that no provider serves."""
    names = router_tiers(router)
    if names:
        check_served(tiers, names, providers, f"the router ({getattr(router, 'source', type(router).__name__)})")


def check_served(tiers: TierTable, names: Iterable[str], providers: Providers, where: str) -> None:
    """Fail now, naming ``where`` the tiers come from, if any of ``names`` is unknown or has no provider."""
    wanted = set(names)
    for name in sorted(wanted):
        tiers.get(name)  # an unknown name fails here, listing the known ones
    for tier in (t for t in tiers.tiers if t.name in wanted):  # cheapest first: stable messages
        try:
            providers.for_tier(tier)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{where} uses tier {tier.name!r}: {exc}") from None


def check_run_args(agent: object, input: object, tenant: object, tags: Mapping[str, str] | None) -> dict[str, str]:
    """Fail clearly on a bad ``run()`` argument; returns the tags as a plain dict."""
    if not (isinstance(agent, type) and issubclass(agent, Agent)) or agent is Agent:
        raise ConfigurationError(
            f"run() takes an Agent subclass (the class itself, not an instance); got {agent!r}"
        )
    if not isinstance(input, str) or not input.strip():
        raise ConfigurationError("run() needs the task input as a non-empty string")
    if not isinstance(tenant, str) or not tenant or ":" in tenant:
        raise ConfigurationError(f"tenant must be a non-empty string without ':', got {tenant!r}")
    clean_tags = dict(tags or {})
    bad = {k: v for k, v in clean_tags.items() if not (isinstance(k, str) and isinstance(v, str))}
    if bad:
        raise ConfigurationError(f"tags must map strings to strings, e.g. {{'team': 'support'}}; got {bad}")
    return clean_tags


def check_agent(
    agent: type[Agent], budget: Budget, *, tiers: TierTable, router: Router, providers: Providers,
    prices: PriceBook, approve: bool,
) -> None:
    """Fail before any spend if ``agent`` names an unknown tier, lacks a provider or price, or an approver."""
    if agent.planner_tier is not None:
        tiers.get(agent.planner_tier)
    reachable = {*tiers.routes.values(), *agent.routes.values(), *router_tiers(router)}
    for tier_name in reachable:
        tiers.get(tier_name)  # an unknown name fails here, listing the known ones
    for tier in (t for t in tiers.tiers if t.name in reachable):  # cheapest first: stable messages
        providers.for_tier(tier)
        if budget.usd is not None and prices.get(tier.provider, tier.model) is None:
            raise PriceUnknownError(
                f"agent {agent.name!r} has a USD cap, but the price of {tier.provider}/{tier.model} "
                f"(tier {tier.name!r}) is unknown, so the cap cannot be enforced: add "
                f"[prices.\"{tier.provider}/{tier.model}\"] with input_mtok and output_mtok to your "
                "config or price file"
            )
    if CapPolicy.APPROVE in agent.on_cap and not approve:
        raise ConfigurationError(
            f"agent {agent.name!r} asks for approval at its caps (on_cap includes 'approve'), but the "
            "runtime has no approver: pass Runtime(approver=async_function)"
        )
