"""Tiers and the router that picks one per subtask."""

from ._cascade import Cascade, answer_key
from ._policy import CascadeSpec, Policy, PolicyRouter, load_policy, load_router, save_policy
from ._prices import RoutingWarning
from ._router import CascadeRoute, RouteDecision, Router
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
    "Cascade",
    "CascadeRoute",
    "CascadeSpec",
    "KnnScorerSpec",
    "LengthScorer",
    "LengthScorerSpec",
    "Policy",
    "PolicyRouter",
    "RouteDecision",
    "Router",
    "RoutingWarning",
    "Score",
    "ScoreRouter",
    "Scorer",
    "Thresholds",
    "Tier",
    "TierTable",
    "answer_key",
    "load_config",
    "load_policy",
    "load_router",
    "load_thresholds",
    "same_model",
    "save_policy",
    "save_thresholds",
    "tier_table_from_config",
]
