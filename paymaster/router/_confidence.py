"""Targets with a confidence level: certify a routing setting on calibration records, not just measure it.

A quality target ("at least 95% of the reference's accuracy") holds on unseen
prompts with probability at least 1 - delta when it is certified like this:

* Per setting, the per-prompt values x (its verdict, or its cost) are paired
  with the reference's y on the same prompts. The target ``t`` holds when
  the mean of ``x - t*y`` is >= 0 (quality) or <= 0 (cost). A one-sided
  confidence bound on that mean (normal approximation of the paired
  difference, whose variance is small because a router and its reference
  mostly agree) tests it at level ``alpha``.
* Settings are tested as in Learn-then-Test: within a *chain* (settings
  ordered by one knob, from the most escalating to the least, fixed before
  the data is seen) by fixed-sequence testing, each at ``alpha``, stopping at
  the first that fails; across chains ``alpha = delta / chains`` (Bonferroni).
  Every certified setting then meets the target with probability >= 1 - delta.
* ``horizon`` widens the bound for a finite batch of future prompts (the
  target judged on that batch rather than on the whole population), so that
  what is promised is what a user measuring those prompts will see.

Everything here is closed form: the same records give the same answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

_EPS = 1e-12


@dataclass(frozen=True, slots=True)
class Paired:
    """Sums over n prompts of a setting's values x and the reference's values y: enough for every bound."""

    n: int
    sx: float
    sy: float
    sxx: float
    syy: float
    sxy: float

    @classmethod
    def of(cls, x: Any, y: Any) -> Paired:
        """The sums of two equal-length numeric sequences (numpy arrays or lists)."""
        xs, ys = [float(v) for v in x], [float(v) for v in y]
        if len(xs) != len(ys):
            raise ValueError(f"{len(xs)} values paired with {len(ys)} reference values")
        return cls(len(xs), sum(xs), sum(ys), sum(v * v for v in xs), sum(v * v for v in ys),
                   sum(a * b for a, b in zip(xs, ys, strict=True)))

    @property
    def ratio(self) -> float:
        """The point estimate: sum(x) / sum(y) (x's share of the reference)."""
        return self.sx / self.sy if abs(self.sy) > _EPS else math.inf

    def margin(self, t: float) -> tuple[float, float]:
        """Mean and standard error of ``x - t*y`` per prompt."""
        n = self.n
        if n == 0:
            return 0.0, math.inf
        mean = (self.sx - t * self.sy) / n
        second = (self.sxx - 2 * t * self.sxy + t * t * self.syy) / n
        var = max(second - mean * mean, 0.0) * n / max(n - 1, 1)
        return mean, math.sqrt(var / n)


@dataclass(frozen=True, slots=True)
class Certificate:
    """What certification concluded about one setting: its point estimate, its bound, and whether it passed."""

    estimate: float
    """The setting's share of the reference (accuracy share for quality, cost share for cost)."""
    bound: float
    """The one-sided confidence bound on that share (lower for quality, upper for cost)."""
    passed: bool


def z_value(alpha: float) -> float:
    """The one-sided normal quantile for level ``alpha`` (e.g. 1.2816 for 0.1)."""
    if not 0 < alpha < 1:
        raise ValueError(f"a confidence level needs 0 < alpha < 1, got {alpha}")
    return NormalDist().inv_cdf(1 - alpha)


def _scale(n: int, horizon: int | None) -> float:
    """How much wider than the population bound a bound on a batch of ``horizon`` future prompts is."""
    return 1.0 if horizon is None else math.sqrt(1 + n / horizon)


def passes(stats: Paired, target: float, side: Literal["lower", "upper"], z: float, horizon: int | None) -> bool:
    """Whether the target holds at this confidence: lower: mean(x - t y) >= 0 with confidence; upper: <= 0.

    A quality test counts one more, pessimistic prompt (the setting wrong where
    the reference is right), so that a handful of items that all agree (zero
    variance) cannot certify anything on their own.
    """
    if side == "lower":
        stats = Paired(stats.n + 1, stats.sx, stats.sy + 1, stats.sxx, stats.syy + 1, stats.sxy)
    mean, se = stats.margin(target)
    se *= _scale(stats.n, horizon)
    slack = 1e-9 * (abs(stats.sx) + abs(target * stats.sy)) / max(stats.n, 1)  # float rounding, not evidence
    return mean - z * se >= -slack if side == "lower" else mean + z * se <= slack


def share_bound(stats: Paired, side: Literal["lower", "upper"], z: float, horizon: int | None) -> float:
    """The confidence bound on the share x/y: the largest (lower) or smallest (upper) t that still passes."""
    lo, hi = 0.0, max(2.0, 2 * abs(stats.ratio) if math.isfinite(stats.ratio) else 2.0)
    if side == "lower":
        if not passes(stats, lo, side, z, horizon):
            return 0.0
        for _ in range(80):  # the pass region is an interval from 0 up to the bound
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if passes(stats, mid, side, z, horizon) else (lo, mid)
        return lo
    if not passes(stats, hi, side, z, horizon):
        return math.inf
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if passes(stats, mid, side, z, horizon) else (mid, hi)
    return hi


def certify(
    chains: Sequence[Sequence[Paired]],
    target: float,
    side: Literal["lower", "upper"],
    delta: float,
    horizon: int | None = None,
) -> list[list[Certificate]]:
    """Test every chain's settings in order; a setting passes only if every earlier one in its chain passed.

    Returns one certificate per setting, in the shape of ``chains``. With
    probability >= 1 - delta every passed setting truly meets the target.
    """
    live = [c for c in chains if c]
    z = z_value(delta / max(len(live), 1))
    out: list[list[Certificate]] = []
    for chain in chains:
        row, going = [], True
        for stats in chain:
            going = going and passes(stats, target, side, z, horizon)
            row.append(Certificate(stats.ratio, share_bound(stats, side, z, horizon), going))
        out.append(row)
    return out
