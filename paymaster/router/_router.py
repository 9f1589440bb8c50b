"""The router: a pure decision from a subtask to a tier, with its reason."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from ..planners._plan import Complexity, Subtask
from ._tiers import Tier, TierTable


class CascadeRoute(BaseModel):
    """A cascade's stages: ``answer`` answers, ``check`` answers too, ``escalate`` answers when they differ."""

    model_config = ConfigDict(frozen=True)

    answer: Tier
    check: Tier
    escalate: Tier


class RouteDecision(BaseModel):
    """Which tier a subtask goes to (or which cascade of tiers), and why."""

    model_config = ConfigDict(frozen=True)

    subtask_id: str
    tier: Tier
    reason: str
    cascade: CascadeRoute | None = None
    """When set, the executor runs the cascade's stages; ``tier`` is then its dearest stage."""


class Router:
    """Routes by complexity through the tier table, with per-agent overrides."""

    def __init__(self, table: TierTable) -> None:
        self.table = table

    def route(self, subtask: Subtask, overrides: Mapping[Complexity, str] | None = None) -> RouteDecision:
        """Pick the tier for ``subtask``: the agent's override for its complexity, else the table's."""
        if overrides and subtask.complexity in overrides:
            name = overrides[subtask.complexity]
            reason = f"complexity={subtask.complexity.value} -> {name} (agent override)"
        else:
            name = self.table.routes[subtask.complexity]
            reason = f"complexity={subtask.complexity.value} -> {name} (tier table)"
        return RouteDecision(subtask_id=subtask.id, tier=self.table.get(name), reason=reason)
