"""Tiers: named (provider, model, max_tokens) choices, ordered cheapest first."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._files import read_toml
from ..errors import ConfigurationError, UnknownTierError
from ..planners._plan import Complexity


class Tier(BaseModel):
    """A model choice: which provider serves it, which model, and its output cap."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    max_tokens: int = Field(default=1024, gt=0)
    accepts: tuple[str, ...] = ()
    """Models this tier may be served by (dated snapshots of them included); empty accepts any.

    A response naming another model stops the task (status ``model_rejected``) with an alert.
    """

    def accepted(self, served: str) -> bool:
        """Whether a response from ``served`` is acceptable for this tier."""
        if not self.accepts:
            return True
        return any(same_model(served, m) for m in (self.model, *self.accepts))


_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")


def same_model(served: str, asked: str) -> bool:
    """True when ``served`` is ``asked`` or a dated snapshot of it (``gpt-4o-mini-2024-07-18``)."""
    return served == asked or _SNAPSHOT.sub("", served) == asked


DEFAULT_TIERS: tuple[Tier, ...] = (
    Tier(name="fast", provider="openai", model="gpt-4o-mini", max_tokens=1024),
    Tier(name="balanced", provider="anthropic", model="claude-haiku-4-5", max_tokens=2048),
    Tier(name="deep", provider="anthropic", model="claude-sonnet-4-6", max_tokens=4096),
)
DEFAULT_ROUTES: Mapping[Complexity, str] = {
    Complexity.SIMPLE: "fast",
    Complexity.MODERATE: "balanced",
    Complexity.COMPLEX: "deep",
}


class TierTable:
    """Tiers in cost order (cheapest first) plus the complexity -> tier routes."""

    def __init__(
        self,
        tiers: Iterable[Tier] = DEFAULT_TIERS,
        routes: Mapping[Complexity | str, str] | None = None,
    ) -> None:
        self.tiers: tuple[Tier, ...] = tuple(tiers)
        if not self.tiers:
            raise ConfigurationError("a tier table needs at least one tier")
        names = [t.name for t in self.tiers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigurationError(f"tier names must be unique; repeated: {dupes}")
        self._by_name = {t.name: t for t in self.tiers}
        spread = {
            Complexity.SIMPLE: names[0],
            Complexity.MODERATE: names[len(names) // 2],
            Complexity.COMPLEX: names[-1],
        }
        # The default names route as documented; custom tiers spread cheapest to deepest.
        defaults = dict(DEFAULT_ROUTES) if set(DEFAULT_ROUTES.values()) <= set(names) else spread
        self.routes: dict[Complexity, str] = defaults
        for key, tier_name in (routes or {}).items():
            try:
                complexity = Complexity(key)
            except ValueError:
                raise ConfigurationError(
                    f"routes: {key!r} is not a complexity; use one of {[c.value for c in Complexity]}"
                ) from None
            self.routes[complexity] = self.get(tier_name).name

    def __iter__(self) -> Iterator[Tier]:
        """The tiers, cheapest first."""
        return iter(self.tiers)

    def __len__(self) -> int:
        """How many tiers the table holds."""
        return len(self.tiers)

    def get(self, name: str) -> Tier:
        """The tier called ``name``; an unknown name lists the known ones."""
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownTierError(
                f"unknown tier {name!r}; known tiers are {list(self._by_name)} "
                "(define it in Runtime(tiers=...) or the [tiers] table of the config file)"
            ) from None

    @property
    def deepest(self) -> Tier:
        """The most capable (most expensive) tier: the baseline every saving is measured against."""
        return self.tiers[-1]

    def rank(self, name: str) -> int:
        """Position of a tier in cost order, 0 = cheapest."""
        return self.tiers.index(self.get(name))


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a Paymaster TOML config file."""
    return read_toml(path, "config file")


def tier_table_from_config(data: Mapping[str, Any], where: str = "config") -> TierTable:
    """Build a tier table from ``[tiers.NAME]`` tables (cheapest first) and a ``[routes]`` table."""
    raw = data.get("tiers")
    if raw is None:
        return TierTable(routes=data.get("routes"))
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigurationError(f"{where}: [tiers] must hold one table per tier, e.g. [tiers.fast]")
    tiers = []
    for name, spec in raw.items():
        try:
            tiers.append(Tier(name=name, **spec))
        except (TypeError, ValidationError) as exc:
            raise ConfigurationError(f"{where}: tier {name!r} is invalid: {exc}") from None
    return TierTable(tiers, routes=data.get("routes"))
