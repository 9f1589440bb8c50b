"""Policy files: the utility router over tiers and cascades, or one cascade for every subtask, in the runtime.

``paymaster calibrate --router utility|cascade`` writes one (JSON)::

    {"format": "paymaster.policy", "version": 1, "kind": "utility",
     "options": ["fast", {"answer": "fast", "check": "balanced", "escalate": "deep"}, "deep"],
     "k": 160, "prior_weight": 10.0, "price": 0.5, "unit_cost": 0.0012,
     "embedder": "hashing-1024", "index": "policy.utility.npz", "index_sha256": "...",
     "objective": {...}, "train": {...}, "prices": {...}}

or ``"kind": "cascade", "cascade": {"answer": ..., "check": ..., "escalate": ...}``.
``load_router`` reads either this or a thresholds file, by its ``format``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import ConfigurationError
from ..planners._plan import Complexity, Subtask
from ..pricing import PriceBook
from ._cascade import Cascade
from ._prices import warn_on_drift
from ._router import CascadeRoute, RouteDecision, Router
from ._score import THRESHOLDS_FORMAT, ScoreRouter
from ._tiers import TierTable
from ._utility import Option, UtilityRouter, option_label

POLICY_FORMAT = "paymaster.policy"
POLICY_VERSION = 1


class CascadeSpec(BaseModel):
    """A cascade of tiers: ``answer`` answers, ``check`` answers too, ``escalate`` answers when they differ."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    answer: str = Field(min_length=1)
    check: str = Field(min_length=1)
    escalate: str = Field(min_length=1)

    def cascade(self) -> Cascade:
        """As a ``Cascade`` of tier names."""
        return Cascade(self.answer, self.check, self.escalate)


class Policy(BaseModel):
    """A policy file's content."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["paymaster.policy"] = "paymaster.policy"
    version: int = POLICY_VERSION
    kind: Literal["utility", "cascade"]
    cascade: CascadeSpec | None = None
    options: tuple[str | CascadeSpec, ...] = ()
    k: int = Field(default=1, gt=0)
    prior_weight: float = Field(default=0.0, ge=0)
    price: float = Field(default=0.0, ge=0)
    unit_cost: float = Field(default=0.0, ge=0)
    embedder: str | None = None
    index: str | None = None
    index_sha256: str | None = None
    objective: dict[str, str] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    prices: dict[str, dict[str, str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Policy:
        if self.version != POLICY_VERSION:
            raise ValueError(f"version {self.version} is not supported (this Paymaster reads {POLICY_VERSION}); "
                             "re-run calibration or upgrade Paymaster")
        if self.kind == "cascade" and self.cascade is None:
            raise ValueError("a cascade policy needs \"cascade\": {\"answer\", \"check\", \"escalate\"}")
        if self.kind == "utility" and not (self.options and self.embedder and self.index and self.index_sha256):
            raise ValueError("a utility policy needs options, embedder, index and index_sha256")
        return self

    def tiers(self) -> set[str]:
        """Every tier the policy can send a subtask to."""
        specs = [self.cascade] if self.cascade is not None else []
        specs += [o for o in self.options if isinstance(o, CascadeSpec)]
        names = {o for o in self.options if isinstance(o, str)}
        return names | {n for s in specs for n in (s.answer, s.check, s.escalate)}


def to_option(spec: str | CascadeSpec) -> Option:
    """A policy file's option as the router's (a tier name or a Cascade)."""
    return spec if isinstance(spec, str) else spec.cascade()


def to_spec(option: Option) -> str | CascadeSpec:
    """A router option as written to a policy file."""
    if isinstance(option, str):
        return option
    return CascadeSpec(answer=option.answer, check=option.check, escalate=option.escalate)


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"router file {path} does not exist; paymaster calibrate writes it") from None
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"router file {path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigurationError(f"router file {path} must hold a JSON object")
    return raw


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; every problem is a ConfigurationError naming the file."""
    p = Path(path)
    raw = _read(p)
    if raw.get("format") != POLICY_FORMAT:
        raise ConfigurationError(f"{p} is not a Paymaster policy file (\"format\": \"{POLICY_FORMAT}\")")
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(f"policy file {p} is invalid: {problems}") from None


def save_policy(policy: Policy, path: str | Path) -> Path:
    """Write a policy file (stable key order: the same calibration writes the same bytes)."""
    p = Path(path)
    p.write_text(json.dumps(policy.model_dump(mode="json", exclude_none=True), indent=2, ensure_ascii=False) + "\n",
                 encoding="utf-8")
    return p


class PolicyRouter(Router):
    """Routes each subtask by a calibrated policy: the utility router's best option, or one cascade.

    A decision that is a cascade carries its three tiers; the executor runs
    the stages (each a ledger row). An agent's explicit routes still win.
    """

    def __init__(
        self, table: TierTable, policy: Policy, model: UtilityRouter | None = None, embedder: Any = None,
        *, source: str = "policy",
    ) -> None:
        super().__init__(table)
        for name in sorted(policy.tiers()):
            table.get(name)  # an unknown tier fails now, with the known names listed
        if policy.kind == "utility" and (model is None or embedder is None):
            raise ConfigurationError("a utility policy needs its index and embedder; use PolicyRouter.from_file")
        self.policy = policy
        self.model = model
        self.embedder = embedder
        self.source = source

    @classmethod
    def from_file(
        cls, path: str | Path, table: TierTable, *, embedder: Any = None, prices: PriceBook | None = None
    ) -> PolicyRouter:
        """Load a policy file (and a utility policy's index beside it); warn if ``prices`` drifted."""
        p = Path(path)
        policy = load_policy(p)
        model = None
        if policy.kind == "utility":
            assert policy.index is not None and policy.embedder is not None
            model = UtilityRouter.load_index(
                p.parent / policy.index, options=[to_option(o) for o in policy.options], k=policy.k,
                prior_weight=policy.prior_weight, price=policy.price, unit_cost=policy.unit_cost,
            )
            if model.digest() != policy.index_sha256:
                raise ConfigurationError(f"utility index {p.parent / policy.index} does not match its policy file "
                                         "(sha256 differs); re-run calibration")
            from ._knn import make_embedder

            embedder = embedder or make_embedder(policy.embedder)
            if embedder.name != policy.embedder:
                raise ConfigurationError(
                    f"the index was built with embedder {policy.embedder!r}, not {embedder.name!r}")
        router = cls(table, policy, model, embedder, source=p.name)
        if prices is not None:
            warn_on_drift(f"policy file {p.name}", policy.prices, table, prices)
        return router

    def decide(self, text: str) -> tuple[Option, str]:
        """The option for ``text`` (a tier name or a Cascade of tier names) and the reason."""
        if self.policy.kind == "cascade":
            assert self.policy.cascade is not None
            cascade = self.policy.cascade.cascade()
            return cascade, f"cascade {cascade.label} for every subtask (policy {self.source})"
        assert self.model is not None
        from ._knn import focus

        np = _numpy()
        vectors = self.embedder.encode([focus(text, frozenset(self.model.boilerplate))])
        [task_type] = self.model.infer_task_types(vectors)
        accuracy, cost = self.model.predict(vectors, [task_type])
        j = int(self.model.choose(accuracy, cost)[0])
        option = self.model.options[j]
        best_accuracy = int(np.argmax(accuracy[0]))
        reason = (
            f"utility: {option_label(option)} predicted accuracy {accuracy[0, j]:.2f} at "
            f"{cost[0, j] / max(self.model.unit_cost, 1e-12):.2f}x the reference's mean cost "
            f"(most accurate option {option_label(self.model.options[best_accuracy])} "
            f"{accuracy[0, best_accuracy]:.2f}); price of accuracy {self.model.price:.4g}, task type {task_type!r} "
            f"by the {self.model.k} nearest recorded prompts (policy {self.source})"
        )
        return option, reason

    def route(self, subtask: Subtask, overrides: Mapping[Complexity, str] | None = None) -> RouteDecision:
        """Pick a tier or a cascade for ``subtask``, unless the agent routes its complexity explicitly."""
        if overrides and subtask.complexity in overrides:
            return super().route(subtask, overrides)
        option, reason = self.decide(subtask.goal)
        if isinstance(option, str):
            return RouteDecision(subtask_id=subtask.id, tier=self.table.get(option), reason=reason)
        stages = CascadeRoute(answer=self.table.get(option.answer), check=self.table.get(option.check),
                              escalate=self.table.get(option.escalate))
        # The decision's tier is the dearest stage, so that admission's estimate covers an escalation.
        return RouteDecision(subtask_id=subtask.id, tier=stages.escalate, reason=reason, cascade=stages)


def _numpy() -> Any:
    from ._deps import require_numpy

    return require_numpy()


def load_router(
    path: str | Path, table: TierTable, *, embedder: Any = None, prices: PriceBook | None = None
) -> Router:
    """The router a file written by ``paymaster calibrate`` describes: a thresholds file or a policy file."""
    p = Path(path)
    kind = _read(p).get("format")
    if kind == POLICY_FORMAT:
        return PolicyRouter.from_file(p, table, embedder=embedder, prices=prices)
    if kind == THRESHOLDS_FORMAT:
        return ScoreRouter.from_file(p, table, embedder=embedder, prices=prices)
    raise ConfigurationError(f"{p} is neither a thresholds file (\"format\": \"{THRESHOLDS_FORMAT}\") nor a policy "
                             f"file (\"format\": \"{POLICY_FORMAT}\"); paymaster calibrate writes them")
