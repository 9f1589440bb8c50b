"""Calibrate the score router on a training split: sweep thresholds, choose by an objective, write the file.

The learned (kNN) scorer is judged on its training prompts leave-one-out: each
prompt is scored from its neighbours other than itself, so the sweep sees the
router as it will behave on prompts it has never seen. Nothing here draws a
random number: the same records give the same thresholds, byte for byte.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._money import fmt_usd
from ..errors import ConfigurationError
from ..providers._replay import tier_name
from ..router._deps import require_numpy
from ..router._knn import KnnIndex, escalation_scores, neighbours, predict
from ..router._score import (
    KnnScorerSpec,
    LengthScorer,
    LengthScorerSpec,
    Thresholds,
    save_thresholds,
)
from ._objective import Choice, CurvePoint, Objective, Reference, certified
from ._policies import PolicyResult, routed, single
from ._records import RecordSet

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

_PICO = Decimal("1e-12")
_DECIMALS = 6
_MAX_SETTINGS = 50_000  # thresholds are rounded before they are swept, so the file holds exactly what was judged


def usd_text(amount: Decimal | None) -> str | None:
    """Dollars as a plain decimal string, to the pico-dollar (the ledger's unit)."""
    if amount is None:
        return None
    return format(amount.quantize(_PICO, rounding=ROUND_HALF_EVEN).normalize(), "f")


def ladder_names(models: Sequence[str], names: Mapping[str, str] | None) -> tuple[str, ...]:
    """Tier names for ``models``: from ``names``, else each model's ``tier_name``; they must be unique."""
    out = tuple((names or {}).get(m) or tier_name(m) for m in models)
    dupes = sorted({n for n in out if out.count(n) > 1})
    if dupes:
        raise ConfigurationError(f"models {list(models)} give repeated tier names {dupes}; pass tier_names=")
    return out


def walk_many(scores: Any, thresholds: Sequence[float]) -> Any:
    """The tier index each row's walk stops at (vectorised ``paymaster.router._score.walk``)."""
    np = require_numpy()
    boundaries = len(thresholds)
    if boundaries == 0:
        return np.zeros(len(scores), dtype=np.int64)
    stops = ~(scores > np.asarray(thresholds, dtype=np.float64))
    return np.where(stops.any(axis=1), stops.argmax(axis=1), boundaries)


def _judge(ladder: RecordSet, ref: Reference, choice: Any, params: dict[str, Any], chain: int = 0) -> CurvePoint:
    rows = range(len(choice))
    return ref.point(ladder.correct[rows, choice], ladder.cost[rows, choice], params, chain)


def _grid(values: Any, size: int) -> list[float]:
    """Candidate thresholds: quantiles of the finite scores, plus one below and one above them all."""
    np = require_numpy()
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return [0.0]
    qs = np.quantile(finite, np.linspace(0.0, 1.0, size))
    cuts = {round(float(q), _DECIMALS) for q in qs}
    cuts |= {round(float(finite.min()) - 1.0, _DECIMALS), round(float(finite.max()) + 1.0, _DECIMALS)}
    return sorted(cuts)


def reference_of(records: RecordSet, objective: Objective) -> PolicyResult:
    """The reference model's result on ``records``."""
    return single(records, objective.reference_model(records))


@dataclass(frozen=True)
class Calibration:
    """A calibrated score router: the chosen thresholds, the sweep behind them and the train result."""

    tiers: tuple[str, ...]
    """Tier names, cheapest first, as the runtime's tier table calls them."""
    models: tuple[str, ...]
    """The recorded model behind each tier."""
    thresholds: tuple[float, ...]
    scorer: LengthScorerSpec | dict[str, Any]
    objective: Objective
    reference: PolicyResult
    train: PolicyResult
    curve: tuple[CurvePoint, ...]
    chosen: CurvePoint
    met: bool
    index: KnnIndex | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    singles: tuple[PolicyResult, ...] = ()
    """Each tier on its own, on the same prompts: the points the router is measured against."""
    choice: Choice | None = None
    """How the setting was chosen: its confidence certificate, or the fallback to the strong tier."""
    prices: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Each tier's provider, model and list price as calibrated (written to the file; the runtime compares)."""

    @property
    def scorer_kind(self) -> str:
        """``length`` or ``knn``."""
        return "length" if isinstance(self.scorer, LengthScorerSpec) else "knn"

    def metrics(self) -> dict[str, Any]:
        """Train-split metrics as written to the thresholds file (money as exact strings)."""
        s, ref = self.train.summary, self.reference.summary
        assert s.cost_usd is not None and ref.cost_usd is not None
        names = dict(zip(self.models, self.tiers, strict=True))
        return {
            "items": s.items,
            "accuracy": f"{s.accuracy:.4f}",
            "cost_usd": usd_text(s.cost_usd),
            "cost_per_success_usd": usd_text(s.cost_per_success_usd),
            "reference": self.reference.name,
            "reference_accuracy": f"{ref.accuracy:.4f}",
            "reference_cost_usd": usd_text(ref.cost_usd),
            "relative_cost": f"{s.cost_usd / ref.cost_usd:.4f}" if ref.cost_usd else None,
            "objective_met": self.met,
            "tier_split": {names[label]: summary.items for label, summary in self.train.split()},
            **self.certificate_metrics(),
            **dict(self.extra),
        }

    def certificate_metrics(self) -> dict[str, Any]:
        """The certificate as written to the file: point estimate, bound, and whether the strong tier fell back."""
        c = self.choice.certificate if self.choice is not None else None
        if c is None:
            return {}
        kind = "accuracy" if self.objective.kind == "quality" else "cost"
        side = "lower" if self.objective.kind == "quality" else "upper"
        return {f"{kind}_share": f"{c.estimate:.4f}", f"{kind}_share_{side}_bound": f"{c.bound:.4f}",
                "delta": str(self.objective.delta), "fallback_to_reference": bool(self.choice and self.choice.fallback)}

    def to_thresholds(self, index_name: str | None = None, index_sha256: str | None = None) -> Thresholds:
        """The thresholds file's content (a kNN scorer needs the name and digest of its saved index)."""
        if isinstance(self.scorer, LengthScorerSpec):
            spec: LengthScorerSpec | KnnScorerSpec = self.scorer
        else:
            if index_name is None or index_sha256 is None:
                raise ConfigurationError("a kNN calibration needs its index saved first; use write()")
            spec = KnnScorerSpec(**self.scorer, index=index_name, index_sha256=index_sha256)
        return Thresholds(
            scorer=spec, tiers=self.tiers, thresholds=self.thresholds,
            objective=self.objective.describe(self.reference.name), train=self.metrics(),
            prices={t: dict(p) for t, p in self.prices.items() if t in self.tiers},
        )

    def write(self, path: str | Path) -> Path:
        """Write the thresholds file (and a kNN index beside it, named after it)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        if self.index is None:
            return save_thresholds(self.to_thresholds(), p)
        index_path = p.with_name(f"{p.stem}.knn.npz")
        digest = self.index.save(index_path)
        return save_thresholds(self.to_thresholds(index_path.name, digest), p)

    def apply(self, records: RecordSet, scores: Any, name: str = "score router") -> PolicyResult:
        """Replay the calibrated thresholds on ``records`` (e.g. the test split) given their scores."""
        ladder = records.restrict(self.models)
        choice = walk_many(scores, self.thresholds)
        return routed(ladder, name, [ladder.models[int(c)] for c in choice], {"thresholds": str(self.thresholds)})

    def describe(self) -> str:
        """One line: the chosen setting and how it did on the training split."""
        s = self.train.summary
        certificate = f"; {self.choice.describe(self.objective)}" if self.choice is not None else ""
        return (
            f"thresholds {list(self.thresholds)} over {list(self.tiers)}: train accuracy {s.accuracy:.4f}, "
            f"cost {fmt_usd(s.cost_usd)} ({'meets' if self.met else 'misses'} the objective){certificate}"
        )


def _finish(
    records: RecordSet, scores: Sequence[Any], curve: list[CurvePoint], objective: Objective,
    reference: PolicyResult, ref: Reference, scorer: Callable[[CurvePoint], LengthScorerSpec | dict[str, Any]],
    index: KnnIndex | None, extra: Mapping[str, Any], names: Mapping[str, str] | None,
) -> Calibration:
    ref_cost = float(reference.summary.cost_usd or 0)
    picked = certified(curve, objective, reference.summary.accuracy, ref_cost, fallback=ref.alone())
    chosen, met = picked.point, picked.met
    singles = tuple(single(records, m) for m in records.models)
    if picked.fallback:  # nothing cheaper is certified: every prompt to the reference tier
        model = reference.name
        return Calibration(
            tiers=ladder_names([model], names), models=(model,), thresholds=(), scorer=LengthScorerSpec(),
            objective=objective, reference=reference, train=reference, curve=tuple(curve), chosen=chosen, met=met,
            index=None, extra=extra, singles=singles, choice=picked,
        )
    combo = chosen.params.get("combo", 0)
    thresholds = tuple(chosen.params["thresholds"])
    choice = walk_many(scores[combo], thresholds)
    train = routed(records, "score router", [records.models[int(c)] for c in choice])
    return Calibration(
        tiers=ladder_names(records.models, names), models=records.models, thresholds=thresholds,
        scorer=scorer(chosen), objective=objective, reference=reference, train=train,
        curve=tuple(p for p in curve if p.params.get("combo", 0) == combo), chosen=chosen, met=met,
        index=index, extra=extra, singles=singles, choice=picked,
    )


def calibrate_knn(
    records: RecordSet,
    embeddings: npt.NDArray[np.float32],
    *,
    embedder: str,
    objective: Objective,
    boilerplate: Sequence[str] = (),
    tiers: Sequence[str] | None = None,
    tier_names: Mapping[str, str] | None = None,
    ks: Sequence[int] = (10, 20, 40, 80),
    prior_weights: Sequence[float] = (0.0, 10.0),
    grid_size: int = 201,
) -> Calibration:
    """Sweep k, the prior weight and a threshold shared by every boundary; choose by ``objective``.

    ``embeddings`` are of the records' prompts with ``boilerplate`` removed
    (see ``learn_boilerplate`` and ``focus``), made by ``embedder``. One
    threshold for all boundaries is the price of accuracy: the walk then stops
    where accuracy - threshold x relative cost is highest.
    """
    np = require_numpy()
    ladder = records.restrict(tiers) if tiers is not None else records
    if len(embeddings) != len(ladder):
        raise ConfigurationError(f"{len(embeddings)} embeddings for {len(ladder)} prompts")
    deepest = np.maximum(ladder.cost[:, -1:], 1e-12)
    index = KnnIndex(
        tiers=ladder_names(ladder.models, tier_names), embeddings=np.asarray(embeddings, dtype=np.float32),
        correct=ladder.correct.astype(np.float32), relative_cost=(ladder.cost / deepest).astype(np.float32),
        boilerplate=tuple(sorted(boilerplate)),
    )
    if len(ladder) < 2:
        raise ConfigurationError("the kNN scorer needs at least two recorded prompts")
    curve: list[CurvePoint] = []
    scores: list[Any] = []
    ref = Reference.of(records, objective)
    # One chain of thresholds per (k, prior weight), each tested at delta / chains. (Choosing k and the
    # weight first by leave-one-out Brier score and testing one chain at the full delta held the target on
    # only 13 of 20 RouterBench re-splits: the leave-one-out estimate of this scorer flatters it.)
    for k in sorted({min(k, len(ladder) - 1) for k in ks}):  # a k past the set's size is the same sweep
        for weight in prior_weights:
            combo_scores, _ = loo_predictions(index, k, weight)
            combo = len(scores)
            scores.append(combo_scores)
            for t in _grid(combo_scores, grid_size):  # lowest threshold (most escalation) first: see certified()
                thresholds = (t,) * (len(ladder.models) - 1)
                curve.append(_judge(ladder, ref, walk_many(combo_scores, thresholds),
                                    {"thresholds": thresholds, "combo": combo, "k": k, "prior_weight": weight}, combo))

    def spec(chosen: CurvePoint) -> dict[str, Any]:
        return {"k": chosen.params["k"], "prior_weight": chosen.params["prior_weight"], "embedder": embedder}

    return _finish(ladder, scores, curve, objective, reference_of(records, objective), ref, spec, index,
                   {"scoring": "leave-one-out on the training split"}, tier_names)


def loo_predictions(index: KnnIndex, k: int, prior_weight: float) -> tuple[Any, Any]:
    """Leave-one-out escalation scores and predicted accuracy of the index's own prompts."""
    np = require_numpy()
    nbrs = neighbours(index.embeddings, index.embeddings, k, exclude_self=True)
    accuracy, cost = predict(index, nbrs, prior_weight)
    return escalation_scores(accuracy, cost).astype(np.float64), accuracy.astype(np.float64)


def calibrate_length(
    records: RecordSet,
    *,
    objective: Objective,
    tiers: Sequence[str] | None = None,
    tier_names: Mapping[str, str] | None = None,
    scale_words: float = 100.0,
    grid_size: int = 21,
) -> Calibration:
    """Sweep increasing thresholds on the length score (no training needed), choose by ``objective``."""
    np = require_numpy()
    ladder = records.restrict(tiers) if tiers is not None else records
    spec = LengthScorerSpec(scale_words=scale_words)
    boundaries = len(ladder.models) - 1
    scorer = LengthScorer(spec, boundaries)
    values = np.array([scorer.score(t).values[0] if boundaries else 0.0 for t in ladder.texts])
    matrix = np.repeat(values[:, None], boundaries, axis=1)
    cuts = _grid(values, grid_size)
    while len(cuts) > 3 and math.comb(len(cuts) + boundaries - 1, boundaries) > _MAX_SETTINGS:
        cuts = sorted({*cuts[::2], cuts[-1]})  # many tiers: a coarser grid (ends kept) keeps the sweep small
    ref = Reference.of(records, objective)
    # A chain per choice of every threshold but the last; in it the last rises, so each setting sends
    # fewer prompts to the deepest tier than the one before (the order certified() tests them in).
    settings = sorted(_increasing(cuts, boundaries), key=lambda t: (t[:-1], t[-1:]))
    heads = {h: i for i, h in enumerate(dict.fromkeys(t[:-1] for t in settings))}
    curve = [_judge(ladder, ref, walk_many(matrix, t), {"thresholds": t}, heads[t[:-1]]) for t in settings]
    return _finish(ladder, [matrix], curve, objective, reference_of(records, objective), ref, lambda _: spec, None,
                   {}, tier_names)


def _increasing(cuts: Sequence[float], n: int) -> list[tuple[float, ...]]:
    """Every non-decreasing choice of ``n`` thresholds from ``cuts``, in lexicographic order."""
    if n == 0:
        return [()]
    out: list[tuple[float, ...]] = []
    for i, c in enumerate(cuts):
        out.extend((c, *rest) for rest in _increasing(cuts[i:], n - 1))
    return out
