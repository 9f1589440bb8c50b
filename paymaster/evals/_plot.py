"""The cost-quality plot: every single model, the oracle, swept router curves and the chosen settings (PNG)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..router._deps import require
from ._objective import CurvePoint, pareto

Point = tuple[float, float]
"""(cost as a share of the reference's cost, accuracy)."""


def plot_cost_quality(
    path: str | Path,
    *,
    singles: Mapping[str, Point],
    curves: Mapping[str, Sequence[Point]] | None = None,
    chosen: Mapping[str, Point] | None = None,
    extra: Mapping[str, Point] | None = None,
    goal: Point | None = None,
    title: str = "Cost-quality",
    reference: str = "reference",
) -> Path:
    """Draw accuracy against relative cost (log scale) and save a PNG; needs matplotlib (the evals extra)."""
    matplotlib = require("matplotlib", "the cost-quality plot")
    matplotlib.use("Agg")  # files only: never open a window
    plt = require("matplotlib.pyplot", "the cost-quality plot")
    fig, ax = plt.subplots(figsize=(9, 7.5), dpi=120)
    for name, (cost, acc) in sorted(singles.items(), key=lambda kv: kv[1][0]):
        ax.scatter([cost], [acc], color="0.45", s=22, zorder=3)
        ax.annotate(name.rsplit("/", 1)[-1], (cost, acc), textcoords="offset points", xytext=(4, -9),
                    fontsize=7, color="0.3")
    for name, points in (curves or {}).items():
        ordered = sorted(points)
        ax.plot([p[0] for p in ordered], [p[1] for p in ordered], linewidth=1.2, alpha=0.8, label=name, zorder=2)
    for name, (cost, acc) in (extra or {}).items():
        ax.scatter([cost], [acc], marker="D", s=40, zorder=4, label=name)
    for name, (cost, acc) in (chosen or {}).items():
        ax.scatter([cost], [acc], marker="*", s=160, zorder=5, edgecolors="black", linewidths=0.6, label=name)
    if goal is not None:
        ax.axhline(goal[1], color="tab:red", linestyle=":", linewidth=1)
        ax.axvline(goal[0], color="tab:red", linestyle=":", linewidth=1)
        ax.annotate("goal", goal, textcoords="offset points", xytext=(-30, 5), fontsize=8, color="tab:red")
    ax.set_xscale("log")
    ax.set_xlabel(f"cost, share of all-{reference} cost (log scale)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.25)
    # Below the axes, where it cannot hide a point.
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # No timestamp in the PNG metadata, so the same numbers draw the same file.
    fig.savefig(out, metadata={"Software": None})
    plt.close(fig)
    return Path(out)


def curve_points(points: Sequence[CurvePoint], reference_cost: float, *, front_only: bool = True) -> list[Point]:
    """Curve points as (relative cost, accuracy), by default only the Pareto front."""
    chosen = pareto(points) if front_only else list(points)
    scale = reference_cost or 1.0
    return [(p.cost / scale, p.accuracy) for p in chosen]
