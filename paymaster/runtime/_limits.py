"""Limits: budgets per agent, tenant or tag, per day and per month, shared by every task in scope.

Account ids name their scope and period (UTC): ``tenant:acme:day:2026-11-23``,
``tag:team=support:month:2026-11``. Every task also charges the all-time
scope accounts (``agent:refund``, ``tenant:acme``, ``tag:team=support``),
which carry no caps but give spend per scope and hold the kill switch.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError
from ..executors import Rate
from ..ledger import Caps
from ._budget import Budget

_TAG = re.compile(r"^tag:([^=:\s]+)=([^:\s]+)$")
_PLAIN = re.compile(r"^(agent|tenant):([^:\s]+)$")
_TOOL = re.compile(r"^tool:([^:\s]+)$")


@dataclass(frozen=True)
class Limit:
    """Caps for one scope (``"tenant:acme"``, ``"agent:refund"``, ``"tag:team=support"``) per day and month.

    ``rate`` limits how fast the scope may call (``Rate(calls_per_minute=60)``);
    a tool (``"tool:search"``) takes a rate only.
    """

    account: str
    day: Budget | None = None
    month: Budget | None = None
    rate: Rate | None = None

    def __post_init__(self) -> None:
        if self.rate is not None and not isinstance(self.rate, Rate):
            raise ConfigurationError(f"limit {self.account!r}: rate= must be a paymaster.Rate")
        if isinstance(self.account, str) and _TOOL.match(self.account):
            if self.day is not None or self.month is not None:
                raise ConfigurationError(
                    f"limit {self.account!r}: a tool takes only rate= (day and month budgets are per agent, tenant "
                    "or tag)"
                )
            if self.rate is None:
                raise ConfigurationError(f"limit {self.account!r} sets no rate=; give a Rate")
            return
        parse_scope(self.account)
        if self.day is None and self.month is None and self.rate is None:
            raise ConfigurationError(
                f"limit {self.account!r} sets none of day=, month= or rate=; give at least one"
            )
        for period, budget in (("day", self.day), ("month", self.month)):
            if budget is None:
                continue
            if not isinstance(budget, Budget):
                raise ConfigurationError(f"limit {self.account!r}: {period}= must be a paymaster.Budget")
            if not budget.spend_only():
                raise ConfigurationError(
                    f"limit {self.account!r}: {period} budgets cap usd, tokens, steps and tool_calls only; "
                    "wall_seconds, retries, retry_usd and depth belong on a task Budget"
                )


def parse_scope(account: str) -> tuple[str, str]:
    """Split ``"tenant:acme"`` into its scope and key; anything else is a clear error."""
    if not isinstance(account, str):
        raise ConfigurationError(f"a limit's account must be a string such as \"tenant:acme\", got {account!r}")
    tag = _TAG.match(account)
    if tag:
        return "tag", f"{tag.group(1)}={tag.group(2)}"
    plain = _PLAIN.match(account)
    if plain:
        return plain.group(1), plain.group(2)
    raise ConfigurationError(
        f"unknown account {account!r}: write \"agent:NAME\", \"tenant:NAME\" or \"tag:KEY=VALUE\""
    )


def _periods(now: dt.datetime) -> dict[str, str]:
    return {"day": now.strftime("%Y-%m-%d"), "month": now.strftime("%Y-%m")}


class Limits:
    """The configured limits, and the chain of accounts a task must fit."""

    def __init__(self, limits: Iterable[Limit] = (), tag_keys: Iterable[str] | None = None) -> None:
        self.tag_keys = None if tag_keys is None else frozenset(tag_keys)
        self._by_scope: dict[str, Limit] = {}
        for limit in limits:
            if not isinstance(limit, Limit):
                raise ConfigurationError(f"limits must be paymaster.Limit objects, got {type(limit).__name__}")
            if limit.account in self._by_scope:
                raise ConfigurationError(f"two limits for {limit.account!r}; merge them into one Limit")
            if _TOOL.match(limit.account):
                self._by_scope[limit.account] = limit
                continue
            scope, key = parse_scope(limit.account)
            if scope == "tag":
                tag_key = key.split("=", 1)[0]
                if self.tag_keys is None:
                    raise ConfigurationError(
                        f"limit on {limit.account!r}: declare the tag keys your tasks set, e.g. "
                        f"Runtime(tag_keys=[{tag_key!r}]), so that a misspelt tag cannot slip past this budget"
                    )
                if tag_key not in self.tag_keys:
                    raise ConfigurationError(
                        f"limit on {limit.account!r}, but no task sets tag {tag_key!r}: the declared tag keys "
                        f"are {sorted(self.tag_keys)}"
                    )
            self._by_scope[limit.account] = limit

    @classmethod
    def from_config(cls, table: Mapping[str, Any], tag_keys: Iterable[str] | None, where: str) -> Limits:
        """Parse ``[limits."tenant:acme"] day = {usd = "50"}`` and ``rate = {calls_per_minute = 60}`` tables."""
        limits = []
        for account, spec in table.items():
            if not isinstance(spec, Mapping) or set(spec) - {"day", "month", "rate"} or not all(
                isinstance(v, Mapping) for v in spec.values()
            ):
                raise ConfigurationError(
                    f"{where}: limits.{account!r} takes only day = {{...}}, month = {{...}} and rate = {{...}}"
                )
            try:
                day, month, rate = (spec.get(p) for p in ("day", "month", "rate"))
                limits.append(Limit(
                    account, day=None if day is None else Budget(**day),
                    month=None if month is None else Budget(**month), rate=None if rate is None else Rate(**rate),
                ))
            except (ValueError, TypeError) as exc:
                raise ConfigurationError(f"{where}: limits.{account!r}: {exc}") from None
        return cls(limits, tag_keys)

    def rates(self) -> dict[str, Rate]:
        """The rate of every scope or tool that has one."""
        return {scope: limit.rate for scope, limit in self._by_scope.items() if limit.rate is not None}

    def check_tags(self, tags: Mapping[str, str]) -> None:
        """Reject tags whose keys were not declared (when keys are declared)."""
        if self.tag_keys is None:
            return
        unknown = sorted(set(tags) - self.tag_keys)
        if unknown:
            raise ConfigurationError(
                f"unknown tag key(s) {unknown}; the declared tag keys are {sorted(self.tag_keys)} "
                "(Runtime(tag_keys=...))"
            )

    def chain(
        self, agent: str, tenant: str, tags: Mapping[str, str], now: dt.datetime | None = None
    ) -> dict[str, Caps | None]:
        """Every account above a task of ``agent`` for ``tenant`` with ``tags``, with the caps to set."""
        periods: dict[str, str] | None = None  # only a periodic limit needs today's date
        scopes = [f"agent:{agent}", f"tenant:{tenant}", *(f"tag:{k}={v}" for k, v in sorted(tags.items()))]
        chain: dict[str, Caps | None] = {}
        for scope in scopes:
            chain[scope] = None  # all-time: no caps; spend per scope, and the kill switch
            limit = self._by_scope.get(scope)
            if limit is None:
                continue
            for period, budget in (("day", limit.day), ("month", limit.month)):
                if budget is not None:
                    periods = periods or _periods(now or dt.datetime.now(dt.UTC))
                    chain[f"{scope}:{period}:{periods[period]}"] = budget.caps()
        return chain


def kill_scopes(agent: str | None, tenant: str | None, tags: Mapping[str, str] | None) -> list[str]:
    """The all-time scope accounts a kill switch flags."""
    scopes = [f"agent:{agent}"] if agent else []
    scopes += [f"tenant:{tenant}"] if tenant else []
    scopes += [f"tag:{k}={v}" for k, v in sorted((tags or {}).items())]
    if not scopes:
        raise ConfigurationError("kill() needs an agent=, tenant= or tags= to say which tasks to stop")
    return scopes
