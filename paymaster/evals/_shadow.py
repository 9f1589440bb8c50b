"""Checking a calibrated router on live traffic, and re-fitting it there: its quality measured by shadow evaluation.

Each scored shadow record pairs the live answer (matched the reference tier's:
1, else 0) with the reference itself (1), so the router's quality as a share of
the reference is matched / scored, and the same one-sided confidence bound that
certified the router at calibration says whether the target still holds on
live traffic with probability at least 1 - delta.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import ConfigurationError
from ..ledger._shadows import ShadowRecord
from ..router._confidence import Certificate, Paired, certify, passes, share_bound, z_value
from ..router._deps import require_numpy
from ..router._knn import KnnScorer, focus
from ..router._score import (
    KnnScorerSpec,
    LengthScorerSpec,
    Thresholds,
    load_scorer,
    load_thresholds,
    save_thresholds,
)
from ..router._tiers import Tier, TierTable
from ..router._utility import option_label
from ._calibrate import _grid, walk_many


@dataclass(frozen=True)
class LiveQuality:
    """Shadow-measured quality of one group of subtasks (all of them, or those routed one way)."""

    label: str
    scored: int
    matched: int
    bound: float
    holds: bool

    @property
    def quality(self) -> float:
        """The share of scored subtasks whose live answer matched the reference tier's."""
        return self.matched / self.scored if self.scored else 0.0


def live_quality(records: Sequence[ShadowRecord], target: float, delta: float) -> list[LiveQuality]:
    """The router's measured quality over every scored record, then per routed tier or cascade (most first).

    The first row is the test of the target at ``delta``; the per-route rows use the same level and
    show where the misses come from (they are not a joint test).
    """
    if not 0 < target <= 1:
        raise ValueError(f"a quality target is a share in (0, 1], got {target}")
    z = z_value(delta)
    scored = [r for r in records if r.agreed is not None]
    groups: dict[str, list[ShadowRecord]] = {}
    for r in scored:
        groups.setdefault(r.routed, []).append(r)
    rows = [("router (every shadowed subtask)", scored)]
    rows += sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    out = []
    for label, group in rows:
        verdicts = [1.0 if r.agreed else 0.0 for r in group]
        stats = Paired.of(verdicts, [1.0] * len(verdicts))
        out.append(LiveQuality(label, len(group), sum(int(v) for v in verdicts),
                               share_bound(stats, "lower", z, None), bool(group) and passes(stats, target, "lower", z,
                                                                                             None)))
    return out


# Re-fitting a router file on shadow records.
#
# A shadow record says, for one sampled live subtask, which tier (or cascade) answered it and whether that answer
# matched the reference tier's. So the records identify the quality of any setting that sends each subtask either
# where it went or to the reference tier (which matches itself by definition); they say nothing of a tier a subtask
# did not run on. The re-fit therefore only moves a router toward the reference: lower score thresholds, a lower
# price of accuracy, or every subtask to the reference. A subtask that a setting would send to a third tier (between
# the one it ran on and the reference) counts as a miss, so the bound stays a lower bound. Settings are tested in one
# chain, most escalating first (every subtask to the reference), by the same fixed-sequence rule as calibration.

_GRID = 201


@dataclass(frozen=True)
class Setting:
    """One setting of the re-fitted router: what it is, and where it sends each shadowed subtask."""

    label: str
    routes: tuple[str, ...]
    value: tuple[float, ...] | float | None
    """The thresholds (score router) or the price of accuracy (utility policy); None for a cascade policy."""
    fallback: bool = False
    """Every subtask to the reference tier (the chain's first setting; the last is the file as it is)."""


@dataclass(frozen=True)
class Refit:
    """A router file re-fitted on shadow records: the chain of settings tested, their certificates, the choice."""

    source: Path
    kind: Literal["thresholds", "utility", "cascade"]
    reference: str
    target: float
    delta: float
    records: tuple[ShadowRecord, ...]
    """The scored records the router file itself routed (the ones every setting is judged on)."""
    left_out: Mapping[str, int]
    settings: tuple[Setting, ...]
    certificates: tuple[Certificate, ...]

    @property
    def chosen(self) -> int | None:
        """The least escalating certified setting (the cheapest), or None when not even the reference is."""
        passed = [i for i, c in enumerate(self.certificates) if c.passed]
        return passed[-1] if passed else None

    def needed(self) -> int | None:
        """How many scored records certifying the target takes at the least (None: no number of records does)."""
        z = z_value(self.delta)
        lo, hi = 0, 1
        while not passes(Paired(hi, hi, hi, hi, hi, hi), self.target, "lower", z, None):
            lo, hi = hi, hi * 2
            if hi > 10**8:
                return None
        while hi - lo > 1:  # more all-matching records only ever help: bisect the first count that passes
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if passes(Paired(mid, mid, mid, mid, mid, mid), self.target, "lower", z, None) \
                else (mid, hi)
        return hi

    def split(self, index: int) -> Counter[str]:
        """How many of the records setting ``index`` sends to each tier or cascade."""
        return Counter(self.settings[index].routes)


def _verdict(record: ShadowRecord, route: str) -> float:
    if route == record.routed:
        return 1.0 if record.agreed else 0.0
    # The reference matches itself; any other tier's answer is unknown, so it counts as a miss.
    return 1.0 if route == record.reference else 0.0


def refit(
    path: Path, records: Sequence[ShadowRecord], texts: Mapping[str, str], target: float, delta: float
) -> Refit:
    """Re-fit the router file at ``path`` on shadow ``records`` (``texts``: each one's subtask text, by task id)."""
    if not 0 < target <= 1:
        raise ValueError(f"a quality target is a share in (0, 1], got {target}")
    kind = _kind(path)
    left_out = Counter[str]()
    candidates = []
    for r in records:
        if r.agreed is None:
            left_out["unscored"] += 1
        elif r.task_id not in texts:
            left_out["live plan gone"] += 1
        else:
            candidates.append(r)
    chain = _chain(path, kind, [texts[r.task_id] for r in candidates]) if candidates else []
    keep = [i for i, r in enumerate(candidates) if chain[-1].routes[i] == r.routed]
    if len(keep) < len(candidates):
        left_out["routed otherwise (an agent's own route, another router file, or the file changed since)"] += (
            len(candidates) - len(keep))
    used = [candidates[i] for i in keep]
    if not used:
        why = ", ".join(f"{n} {what}" for what, n in left_out.items()) or "there are none"
        raise ConfigurationError(f"no scored shadow record was routed by {path.name} ({why}): run the runtime with "
                                 f"Runtime(router={str(path)!r}, shadow=Shadow(...)) first")
    references = sorted({r.reference for r in used})
    if len(references) > 1:
        raise ConfigurationError(f"the shadow records compare against several reference tiers {references}: "
                                 "re-fit on one (--since the day the Shadow tier last changed)")
    [reference] = references
    settings = [Setting(f"every subtask to {reference}", (reference,) * len(used), None, fallback=True)]
    for s in chain:
        routes = tuple(s.routes[i] for i in keep)
        # Only settings that send each record where it ran or to the reference: of any other tier's answer the
        # records know nothing, so such a setting would fail the chain for want of evidence, not of quality
        # (a reference in the middle of the ladder). Chosen by routes alone, so the bound stays valid.
        if all(route in (r.routed, reference) for r, route in zip(used, routes, strict=True)):
            settings.append(Setting(s.label, routes, s.value))
    stats = [Paired.of([_verdict(r, route) for r, route in zip(used, s.routes, strict=True)], [1.0] * len(used))
             for s in settings]
    [certificates] = certify([stats], target, "lower", delta)
    return Refit(path, kind, reference, target, delta, tuple(used), dict(left_out), tuple(settings),
                 tuple(certificates))


def _kind(path: Path) -> Literal["thresholds", "utility", "cascade"]:
    """What kind of router file ``path`` is (a thresholds file, or a utility or cascade policy)."""
    from ..router._policy import load_policy

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"router file {path} does not exist; paymaster calibrate writes it") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"router file {path} is not a readable JSON file: {exc}") from None
    kind = raw.get("format") if isinstance(raw, dict) else None
    if kind == "paymaster.thresholds":
        return "thresholds"
    if kind == "paymaster.policy":
        return load_policy(path).kind
    raise ConfigurationError(f"{path} is neither a thresholds file nor a policy file; paymaster calibrate writes them")


def _chain(path: Path, kind: str, texts: list[str]) -> list[Setting]:
    """The file's settings, from the most escalating to the file as it is (the last), routing ``texts``."""
    np = require_numpy()
    if kind == "thresholds":
        thresholds = load_thresholds(path)
        scorer = load_scorer(thresholds, path.parent)
        values = (scorer.score_many(texts)[0].astype(np.float64) if isinstance(scorer, KnnScorer) else
                  np.array([scorer.score(t).values for t in texts], dtype=np.float64).reshape(len(texts), -1))
        tiers, limits = thresholds.tiers, thresholds.thresholds
        # Capping every threshold at c sends a subtask whose score passes c further, never less far.
        cuts = [c for c in _grid(values.ravel(), _GRID) if c < max(limits, default=-math.inf)]
        out = []
        for value in [*(tuple(min(t, c) for t in limits) for c in cuts), tuple(limits)]:
            routes = tuple(tiers[int(i)] for i in walk_many(values, value))
            out.append(Setting(f"thresholds {[round(v, 6) for v in value]}", routes, value))
        return out
    from ..router._policy import PolicyRouter, load_policy

    # A decision reads only tier names, never a tier's model: a table of the policy's own names will do, so the
    # re-fit needs neither the runtime's config nor its providers.
    names = sorted(load_policy(path).tiers())
    router = PolicyRouter.from_file(path, TierTable([Tier(name=n, provider="refit", model=n) for n in names]))
    policy = router.policy
    if kind == "cascade":
        assert policy.cascade is not None
        label = policy.cascade.cascade().label
        return [Setting(f"cascade {label}", (label,) * len(texts), None)]
    model = router.model
    assert model is not None
    vectors = router.embedder.encode([focus(t, frozenset(model.boilerplate)) for t in texts])
    accuracy, cost = model.predict(vectors, model.infer_task_types(vectors))
    out = []
    prices = [policy.price * k / (_GRID - 1) for k in range(_GRID - 1)]
    for price in [*prices, policy.price]:  # a lower price of accuracy buys more of it
        routes = tuple(option_label(model.options[int(j)]) for j in model.choose(accuracy, cost, price))
        out.append(Setting(f"price of accuracy {price:.4g}", routes, price))
    return out


def write_refit(fit: Refit, out: Path) -> Path:
    """Write the chosen setting as a router file (a learned index is copied beside it); the caller checks ``out``."""
    from ..router._policy import Policy, load_policy, save_policy

    chosen = fit.chosen
    if chosen is None:
        raise ConfigurationError("nothing is certified on these shadow records, not even the reference tier alone")
    setting, certificate = fit.settings[chosen], fit.certificates[chosen]
    days = [dt.datetime.fromtimestamp(r.created_at, dt.UTC).date().isoformat() for r in fit.records]
    objective = {"kind": "quality", "target": f"{fit.target:g}", "reference": fit.reference, "delta": f"{fit.delta:g}",
                 "measured": "share of shadowed live subtasks whose answer matched the reference tier's"}
    train = {"source": "shadow evaluation", "items": len(fit.records), "from": days[0], "until": days[-1],
             "matched_share": f"{certificate.estimate:.4f}", "matched_share_lower_bound": f"{certificate.bound:.4f}",
             "fallback_to_reference": setting.fallback, "refitted_from": fit.source.name,
             "routes": dict(sorted(fit.split(chosen).items()))}
    out.parent.mkdir(parents=True, exist_ok=True)
    if fit.kind == "thresholds":
        thresholds = load_thresholds(fit.source)
        if setting.fallback:
            prices = {t: p for t, p in thresholds.prices.items() if t == fit.reference}
            new = Thresholds(scorer=LengthScorerSpec(), tiers=(fit.reference,), thresholds=(), objective=objective,
                             train=train, prices=prices)
            return save_thresholds(new, out)
        data = thresholds.model_dump(mode="json") | {"thresholds": setting.value, "objective": objective,
                                                     "train": train}
        if isinstance(thresholds.scorer, KnnScorerSpec):
            data["scorer"]["index"] = _index_beside(fit.source.parent / thresholds.scorer.index, out, "knn")
        return save_thresholds(Thresholds.model_validate(data), out)
    policy = load_policy(fit.source)
    if setting.fallback:
        # A score router of one tier is the runtime's way to say "every subtask to this tier".
        prices = {t: p for t, p in policy.prices.items() if t == fit.reference}
        return save_thresholds(Thresholds(scorer=LengthScorerSpec(), tiers=(fit.reference,), thresholds=(),
                                          objective=objective, train=train, prices=prices), out)
    data = policy.model_dump(mode="json", exclude_none=True) | {"objective": objective, "train": train}
    if fit.kind == "utility":
        assert policy.index is not None
        data |= {"price": setting.value, "index": _index_beside(fit.source.parent / policy.index, out, "utility")}
    return save_policy(Policy.model_validate(data), out)


def _index_beside(source: Path, out: Path, kind: str) -> str:
    """Copy a learned index next to ``out`` (named after it, as calibration names it); return its file name."""
    dest = out.with_name(f"{out.stem}.{kind}.npz")
    if dest.resolve() == source.resolve():
        return dest.name
    data = source.read_bytes()
    if dest.exists() and dest.read_bytes() != data:
        raise ConfigurationError(f"{dest} exists and is not a copy of {source}: write the re-fitted file elsewhere "
                                 "(--out) or remove it")
    dest.write_bytes(data)
    return dest.name
