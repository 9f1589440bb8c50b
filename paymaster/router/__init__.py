"""Tiers and the router that picks one per subtask."""

from ._router import RouteDecision, Router
from ._score import (
    KnnScorerSpec,
    LengthScorer,
    LengthScorerSpec,
    Score,
    Scorer,
    ScoreRouter,
    Thresholds,
    load_thresholds,
    save_thresholds,
)
from ._tiers import DEFAULT_ROUTES, DEFAULT_TIERS, Tier, TierTable, load_config, same_model, tier_table_from_config

__all__ = [
    "DEFAULT_ROUTES",
    "DEFAULT_TIERS",
    "KnnScorerSpec",
    "LengthScorer",
    "LengthScorerSpec",
    "RouteDecision",
    "Router",
    "Score",
    "ScoreRouter",
    "Scorer",
    "Thresholds",
    "Tier",
    "TierTable",
    "load_config",
    "load_thresholds",
    "same_model",
    "save_thresholds",
    "tier_table_from_config",
]
