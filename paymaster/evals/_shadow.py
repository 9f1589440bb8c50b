"""Checking a calibrated router on live traffic: its quality as measured by shadow evaluation, with a bound.

Each scored shadow record pairs the live answer (matched the reference tier's:
1, else 0) with the reference itself (1), so the router's quality as a share of
the reference is matched / scored, and the same one-sided confidence bound that
certified the router at calibration says whether the target still holds on
live traffic with probability at least 1 - delta.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..ledger._shadows import ShadowRecord
from ..router._confidence import Paired, passes, share_bound, z_value


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
