"""Write what the evals calibrated (the utility router, a cascade) as a policy file the runtime loads."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ..providers._replay import tier_name
from ..router._policy import CascadeSpec, Policy, save_policy, to_spec
from ._calibrate import usd_text
from ._cascade import CascadeCalibration
from ._objective import Choice, Objective
from ._policies import PolicyResult
from ._predict import UtilityCalibration


def _names(models: list[str], tier_names: Mapping[str, str] | None) -> dict[str, str]:
    out = {m: (tier_names or {}).get(m) or tier_name(m) for m in models}
    if len(set(out.values())) != len(out):
        raise ConfigurationError(f"models {models} give repeated tier names; pass tier_names=")
    return out


def _train(train: PolicyResult, reference: PolicyResult, choice: Choice | None, objective: Objective) -> dict[str, Any]:
    s, ref = train.summary, reference.summary
    out: dict[str, Any] = {
        "items": s.items, "accuracy": f"{s.accuracy:.4f}", "cost_usd": usd_text(s.cost_usd),
        "reference": reference.name, "reference_accuracy": f"{ref.accuracy:.4f}",
        "reference_cost_usd": usd_text(ref.cost_usd),
    }
    c = None if choice is None else choice.certificate
    if c is not None and choice is not None:
        kind, side = ("accuracy", "lower") if objective.kind == "quality" else ("cost", "upper")
        out |= {f"{kind}_share": f"{c.estimate:.4f}", f"{kind}_share_{side}_bound": f"{c.bound:.4f}",
                "fallback_to_reference": choice.fallback}
    return out


def write_utility_policy(
    calibration: UtilityCalibration, path: str | Path, *, embedder: str,
    tier_names: Mapping[str, str] | None = None, prices: Mapping[str, Mapping[str, str]] | None = None,
) -> Path:
    """Write the calibrated utility router (and its index, beside it) as a policy file of tier names."""
    if calibration.objective is None:
        raise ConfigurationError("this calibration does not say its objective; calibrate with calibrate_utility")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    models = sorted({m for o in calibration.router.options
                     for m in ([o] if isinstance(o, str) else [o.answer, o.check, o.escalate])})
    router = calibration.router.renamed(_names(models, tier_names))
    index = p.with_name(f"{p.stem}.utility.npz")
    digest = router.save_index(index)
    policy = Policy(
        kind="utility", options=tuple(to_spec(o) for o in router.options), k=router.k,
        prior_weight=router.prior_weight, price=router.price, unit_cost=router.unit_cost, embedder=embedder,
        index=index.name, index_sha256=digest, objective=calibration.objective.describe(calibration.reference.name),
        train=_train(calibration.train, calibration.reference, calibration.choice, calibration.objective),
        prices={k: dict(v) for k, v in (prices or {}).items()},
    )
    return save_policy(policy, p)


def write_cascade_policy(
    calibration: CascadeCalibration, path: str | Path, *, tier_names: Mapping[str, str] | None = None,
    prices: Mapping[str, Mapping[str, str]] | None = None,
) -> Path:
    """Write a calibrated cascade (every subtask through it) as a policy file of tier names."""
    if calibration.objective is None:
        raise ConfigurationError("this calibration does not say its objective; calibrate with calibrate_cascade")
    c = calibration.cascade
    names = _names(sorted({c.answer, c.check, c.escalate}), tier_names)
    policy = Policy(
        kind="cascade", cascade=CascadeSpec(answer=names[c.answer], check=names[c.check], escalate=names[c.escalate]),
        objective=calibration.objective.describe(calibration.reference.name),
        train=_train(calibration.train, calibration.reference, calibration.choice, calibration.objective),
        prices={k: dict(v) for k, v in (prices or {}).items()},
    )
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return save_policy(policy, p)
