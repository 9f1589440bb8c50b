"""Score mode: a difficulty score and thresholds between tiers decide, loaded from a calibrated file.

Tiers are walked cheapest first. At each boundary the scorer says how strongly
the prompt wants to go deeper (its *escalation score* there); the walk goes on
while that score is above the boundary's threshold and stops at the first tier
where it is not. A scalar scorer (``length``) gives every boundary the same
score, so increasing thresholds cut the score range into one band per tier.
The learned scorer (``knn``, in ``paymaster.evals``) gives, at each tier, the
best accuracy gained per unit of extra cost by any deeper tier, estimated from
the recorded outcomes of the most similar training prompts; one threshold is
then the price of accuracy (the walk stops at the tier a utility of
accuracy - threshold x cost prefers).

The thresholds file (JSON, written by calibration)::

    {"format": "paymaster.thresholds", "version": 1,
     "scorer": {"kind": "length", "scale_words": 100.0},
     "tiers": ["fast", "balanced", "deep"],          # cheapest first
     "thresholds": [0.3, 0.6],                       # one per boundary
     "objective": {"kind": "quality", "target": "0.95", "reference": "deep", "delta": "0.1"},
     "train": {"items": 120, "accuracy": "0.9", "cost_usd": "0.12", "accuracy_share_lower_bound": ...},
     "prices": {"fast": {"provider": "openai", "model": "gpt-4o-mini", "input_mtok": "0.15", ...}, ...}}
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import ConfigurationError
from ..planners._plan import Complexity, Subtask
from ..pricing import PriceBook
from ._prices import warn_on_drift
from ._router import RouteDecision, Router
from ._tiers import TierTable

THRESHOLDS_FORMAT = "paymaster.thresholds"
THRESHOLDS_VERSION = 1


class LengthScorerSpec(BaseModel):
    """A scalar difficulty from the prompt's length: words / (words + scale_words), in [0, 1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["length"] = "length"
    scale_words: float = Field(default=100.0, gt=0)


class KnnScorerSpec(BaseModel):
    """The learned scorer: k nearest recorded prompts by embedding; its index lives beside the file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["knn"] = "knn"
    k: int = Field(gt=0)
    prior_weight: float = Field(default=0.0, ge=0)
    embedder: str = Field(min_length=1)
    index: str = Field(min_length=1)
    index_sha256: str = Field(min_length=64, max_length=64)


ScorerSpec = Annotated[LengthScorerSpec | KnnScorerSpec, Field(discriminator="kind")]


class Thresholds(BaseModel):
    """A thresholds file: scorer, tiers (cheapest first), one threshold per boundary, train metrics."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["paymaster.thresholds"] = "paymaster.thresholds"
    version: int = THRESHOLDS_VERSION
    scorer: ScorerSpec
    tiers: tuple[str, ...] = Field(min_length=1)
    thresholds: tuple[float, ...]
    objective: dict[str, str] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    prices: dict[str, dict[str, str]] = Field(default_factory=dict)
    """Each tier's provider, model and list price when calibrated: the runtime warns when they change."""

    @model_validator(mode="after")
    def _check(self) -> Thresholds:
        if self.version != THRESHOLDS_VERSION:
            raise ValueError(
                f"version {self.version} is not supported (this Paymaster reads version {THRESHOLDS_VERSION}); "
                "re-run calibration or upgrade Paymaster"
            )
        dupes = sorted({t for t in self.tiers if self.tiers.count(t) > 1})
        if dupes:
            raise ValueError(f"tiers must be unique; repeated: {dupes}")
        if len(self.thresholds) != len(self.tiers) - 1:
            raise ValueError(
                f"{len(self.tiers)} tiers need {len(self.tiers) - 1} thresholds (one per boundary), "
                f"got {len(self.thresholds)}"
            )
        if not all(math.isfinite(t) for t in self.thresholds):
            raise ValueError("thresholds must be finite numbers")
        return self


def load_thresholds(path: str | Path) -> Thresholds:
    """Read and validate a thresholds file; every problem is a ConfigurationError naming the file."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"thresholds file {p} does not exist; calibration writes it") from None
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"thresholds file {p} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("format") != THRESHOLDS_FORMAT:
        raise ConfigurationError(f"{p} is not a Paymaster thresholds file (\"format\": \"{THRESHOLDS_FORMAT}\")")
    try:
        return Thresholds.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(f"thresholds file {p} is invalid: {problems}") from None


def dump_thresholds(thresholds: Thresholds) -> str:
    """The file's text: stable key order, so the same calibration writes the same bytes."""
    return json.dumps(thresholds.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"


def save_thresholds(thresholds: Thresholds, path: str | Path) -> Path:
    """Write a thresholds file and return its path."""
    p = Path(path)
    p.write_text(dump_thresholds(thresholds), encoding="utf-8")
    return p


@dataclass(frozen=True, slots=True)
class Score:
    """A scorer's verdict on one text: an escalation score per tier boundary and a short explanation."""

    values: tuple[float, ...]
    detail: str


class Scorer(Protocol):
    """Anything that scores a prompt for a ladder of tiers."""

    def score(self, text: str) -> Score:
        """Escalation scores for ``text``, one per boundary of the ladder."""


class LengthScorer:
    """Longer prompts score higher: words / (words + scale_words). Needs no model and no training."""

    def __init__(self, spec: LengthScorerSpec, boundaries: int) -> None:
        self.spec = spec
        self.boundaries = boundaries

    def score(self, text: str) -> Score:
        """The same length score at every boundary."""
        words = len(text.split())
        value = words / (words + self.spec.scale_words)
        return Score((value,) * self.boundaries, f"length: {words} words -> {value:.3f}")


def load_scorer(thresholds: Thresholds, base_dir: Path, embedder: Any = None) -> Scorer:
    """Build the scorer a thresholds file names; learned scorers load their index from ``base_dir``."""
    spec = thresholds.scorer
    if isinstance(spec, LengthScorerSpec):
        return LengthScorer(spec, len(thresholds.tiers) - 1)
    # Imported here: the learned scorer needs numpy (the evals extra), the router itself does not.
    from ._knn import KnnScorer

    return KnnScorer.from_spec(spec, base_dir, thresholds.tiers, embedder=embedder)


def walk(values: Sequence[float], thresholds: Sequence[float]) -> int:
    """Index of the tier where the walk stops: the first boundary whose score is not above its threshold."""
    for i, (value, limit) in enumerate(zip(values, thresholds, strict=True)):
        if not value > limit:  # written so that a NaN score stops the walk rather than escalating
            return i
    return len(thresholds)


class ScoreRouter(Router):
    """Routes each subtask by its score against calibrated thresholds; an agent's explicit routes still win.

    Tiers named in the thresholds file must exist in the runtime's tier table.
    Every decision's reason names the score, the thresholds it was held
    against, and where the thresholds came from.
    """

    def __init__(
        self, table: TierTable, thresholds: Thresholds, scorer: Scorer, *, source: str = "thresholds"
    ) -> None:
        super().__init__(table)
        for name in thresholds.tiers:
            table.get(name)  # an unknown tier fails now, with the known names listed
        self.thresholds = thresholds
        self.scorer = scorer
        self.source = source

    @classmethod
    def from_file(
        cls, path: str | Path, table: TierTable, *, embedder: Any = None, prices: PriceBook | None = None
    ) -> ScoreRouter:
        """Load a thresholds file (and a learned scorer's index next to it); warn if ``prices`` drifted."""
        p = Path(path)
        thresholds = load_thresholds(p)
        router = cls(table, thresholds, load_scorer(thresholds, p.parent, embedder), source=p.name)
        if prices is not None:
            warn_on_drift(f"thresholds file {p.name}", thresholds.prices, table, prices)
        return router

    def decide(self, text: str) -> tuple[str, str]:
        """The tier name for ``text`` and the reason, without a Subtask around it."""
        score = self.scorer.score(text)
        tiers, limits = self.thresholds.tiers, self.thresholds.thresholds
        stop = walk(score.values, limits)
        steps = [f"{tiers[i]} {score.values[i]:.3f} > {limits[i]:.3f}" for i in range(stop)]
        if stop < len(limits):
            steps.append(f"{tiers[stop]} {score.values[stop]:.3f} <= {limits[stop]:.3f}")
        walked = "; ".join(steps) if steps else "single tier"
        reason = f"score {score.detail}; {walked} -> {tiers[stop]} (thresholds {self.source})"
        return tiers[stop], reason

    def route(self, subtask: Subtask, overrides: Mapping[Complexity, str] | None = None) -> RouteDecision:
        """Pick the tier for ``subtask`` by its score, unless the agent routes its complexity explicitly."""
        if overrides and subtask.complexity in overrides:
            return super().route(subtask, overrides)
        name, reason = self.decide(subtask.goal)
        return RouteDecision(subtask_id=subtask.id, tier=self.table.get(name), reason=reason)
