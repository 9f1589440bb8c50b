"""Tiers and the router that picks one per subtask."""

from ._router import RouteDecision, Router
from ._tiers import DEFAULT_ROUTES, DEFAULT_TIERS, Tier, TierTable, load_config, tier_table_from_config

__all__ = [
    "DEFAULT_ROUTES",
    "DEFAULT_TIERS",
    "RouteDecision",
    "Router",
    "Tier",
    "TierTable",
    "load_config",
    "tier_table_from_config",
]
