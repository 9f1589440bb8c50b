"""Resolving a Runtime's settings from code arguments and an optional TOML config file."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ..executors import Cache
from ..ledger import Ledger
from ..planners import Complexity
from ..pricing import PriceBook, parse_price_overrides
from ..router import Router, Tier, TierTable, load_config, load_router, tier_table_from_config
from ._limits import Limit, Limits
from ._policies import Policies


@dataclass(frozen=True)
class Settings:
    """Tiers, prices and limits, with what was given in code taking precedence over the config file."""

    tiers: TierTable
    prices: PriceBook
    limits: Limits
    data: Mapping[str, Any]
    base: Path
    policies: Policies

    @classmethod
    def resolve(
        cls,
        *,
        config: str | Path | None,
        tiers: Iterable[Tier] | TierTable | None,
        routes: Mapping[Complexity | str, str] | None,
        prices: str | Path | PriceBook | None,
        limits: Iterable[Limit] | None,
        tag_keys: Iterable[str] | None,
    ) -> Settings:
        """Read ``config`` (if any) and merge it under the arguments given in code."""
        data: Mapping[str, Any] = load_config(config) if config is not None else {}
        where = str(config) if config is not None else "config"
        if isinstance(tiers, TierTable):
            table = tiers
        elif tiers is not None:
            table = TierTable(tiers, routes=routes or data.get("routes"))
        else:
            table = tier_table_from_config({**data, **({"routes": routes} if routes else {})}, where)
        if isinstance(prices, PriceBook):
            book = prices
        else:
            book = PriceBook.from_file(prices) if prices is not None else PriceBook()
            for model_prices in parse_price_overrides(data.get("prices", {}), f"{where}: prices").values():
                book.set(model_prices)
        keys = tag_keys if tag_keys is not None else data.get("tag_keys")
        scoped = Limits(limits, keys) if limits is not None else Limits.from_config(data.get("limits", {}), keys, where)
        base = Path(config).parent if config is not None else Path(".")
        check_tier_prices(table, book, "Runtime(tiers=...)" if tiers is not None else where)
        return cls(table, book, scoped, data, base, Policies.from_config(data, where, table))

    def router(self, given: Router | str | Path | None) -> Router:
        """The router given in code, else the config's ``[router] policy`` (or ``thresholds``) file, else routes."""
        if isinstance(given, Router):
            return given
        if given is not None:
            return load_router(given, self.tiers, prices=self.prices)  # a thresholds or a policy file
        table = self.data.get("router", {})
        path = table.get("policy", table.get("thresholds"))
        if path is not None:
            return load_router(self.base / path, self.tiers, prices=self.prices)  # relative to the config file
        return Router(self.tiers)


def check_tier_prices(table: TierTable, book: PriceBook, where: str) -> None:
    """Warn when tiers are not listed cheapest first, or when the baseline (last) tier costs nothing.

    Routing and savings both read the order: the last tier is the "deepest" one that
    complex work goes to by default and that every saving is measured against.
    """
    priced: list[tuple[Tier, Decimal]] = []
    for tier in table:
        prices = book.get(tier.provider, tier.model)
        if prices is not None:  # an unknown price is reported where a USD cap needs it
            # A typical call: as many prompt tokens as output tokens.
            priced.append((tier, prices.base.input + prices.base.output))
    for (cheaper, low), (dearer, high) in itertools.pairwise(priced):
        if high < low:
            warnings.warn(
                f"{where}: tier {dearer.name!r} (${high} per million input + output tokens) is listed after "
                f"{cheaper.name!r} (${low}), but tiers are read cheapest first: the last one is the baseline "
                "and complex work goes to it. List the tiers from cheapest to most capable.",
                UserWarning,
                stacklevel=4,
            )
            break
    if len(table) > 1 and priced and priced[-1][0] == table.deepest and priced[-1][1] == 0:
        warnings.warn(
            f"{where}: the baseline tier {table.deepest.name!r} (listed last) costs $0, so every saving "
            "reads $0. List your most capable priced tier last.",
            UserWarning,
            stacklevel=4,
        )


def open_ledger(ledger: str | Path | Ledger | None, leases: bool, heartbeat_seconds: float | None) -> Ledger:
    """The ledger to use: the one given, or one opened at a URL or path with these options."""
    if isinstance(ledger, Ledger):
        if leases and ledger.accounts.leases is None:
            raise ConfigurationError("leases=True needs the ledger opened with them: Ledger(url, leases=True)")
        if heartbeat_seconds is not None:
            raise ConfigurationError("heartbeat_seconds is set on the Ledger given: Ledger(url, heartbeat_seconds=...)")
        return ledger
    if heartbeat_seconds is None:
        return Ledger(ledger, leases=leases)
    return Ledger(ledger, leases=leases, heartbeat_seconds=heartbeat_seconds)


def open_cache(cache: Cache | str | Path | bool | None, ledger: Ledger) -> tuple[Cache | None, bool]:
    """The cache to use and whether this runtime opened it (True: a file beside a SQLite ledger)."""
    if cache is None or cache is False:
        return None, False
    if not isinstance(cache, str | Path | bool):
        return cache, False
    from ..cache import SemanticCache  # needs the `cache` extra; a clear error names it

    if cache is True:
        database = ledger.engine.url.database
        if ledger.engine.dialect.name != "sqlite" or not database or database == ":memory:":
            raise ConfigurationError("cache=True keeps the cache beside a SQLite ledger file; pass cache=PATH")
        path = Path(database).with_suffix(".cache.db")
    else:
        path = Path(cache)
    return SemanticCache(path), True
