"""Resolving a Runtime's settings from code arguments and an optional TOML config file."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..planners import Complexity
from ..pricing import PriceBook, parse_price_overrides
from ..router import Router, ScoreRouter, Tier, TierTable, load_config, tier_table_from_config
from ._limits import Limit, Limits


@dataclass(frozen=True)
class Settings:
    """Tiers, prices and limits, with what was given in code taking precedence over the config file."""

    tiers: TierTable
    prices: PriceBook
    limits: Limits
    data: Mapping[str, Any]
    base: Path

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
        return cls(table, book, scoped, data, base)

    def router(self, given: Router | str | Path | None) -> Router:
        """The router given in code, else the config's ``[router] thresholds`` file, else complexity routes."""
        if isinstance(given, Router):
            return given
        if given is not None:
            return ScoreRouter.from_file(given, self.tiers)
        thresholds = self.data.get("router", {}).get("thresholds")
        if thresholds is not None:
            return ScoreRouter.from_file(self.base / thresholds, self.tiers)  # relative to the config file
        return Router(self.tiers)
