"""Rich tables of eval results: summary, tier split, model selection and failures."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal

from rich.table import Table

from .._money import fmt_usd
from ._metrics import SelectionRow, Summary
from ._run import EvalReport, ItemResult


def usd(amount: Decimal | None, places: int = 6) -> str:
    """Dollars for a table: rounded to ``places`` decimals, unknown stays visible."""
    if amount is None:
        return "unknown"
    return fmt_usd(amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN))


def summary_table(report: EvalReport, title: str | None = None) -> Table:
    """Items, accuracy, total cost, cost per successful outcome and cost per item."""
    s = report.summary
    table = Table(title=title or f"{report.agent} on {report.golden}", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("items", str(s.items))
    table.add_row("correct", str(s.correct))
    table.add_row("accuracy", f"{s.accuracy:.1%}")
    table.add_row("cost", usd(s.cost_usd))
    table.add_row("cost per successful outcome", usd(s.cost_per_success_usd) if s.correct else "n/a (no success)")
    table.add_row("cost per item", usd(s.mean_cost_usd))
    return table


def split_table(
    rows: Sequence[tuple[str, Summary]], title: str = "Tier split", label: str = "tier", *, share: bool = True
) -> Table:
    """One row per tier (or route, or policy): items, share, accuracy, cost and cost per success."""
    total = sum(s.items for _, s in rows) or 1
    table = Table(title=title, title_justify="left")
    for col in (label, "items", *(["share"] if share else []), "accuracy", "cost", "cost / success"):
        table.add_column(col, justify="left" if col == label else "right")
    for name, s in rows:
        table.add_row(name, str(s.items), *([f"{s.items / total:.0%}"] if share else []), f"{s.accuracy:.1%}",
                      usd(s.cost_usd), usd(s.cost_per_success_usd) if s.correct else "n/a")
    return table


def selection_table(rows: Sequence[SelectionRow], title: str = "Model selection") -> Table:
    """Which models handled which task types, at what accuracy and cost."""
    table = Table(title=title, title_justify="left")
    for col in ("task type", "model", "items", "share", "accuracy", "cost"):
        table.add_column(col, justify="right" if col in ("items", "share", "accuracy", "cost") else "left")
    for r in rows:
        table.add_row(r.task_type, r.model, str(r.summary.items), f"{r.share:.0%}", f"{r.summary.accuracy:.1%}",
                      usd(r.summary.cost_usd))
    return table


def failures_table(results: Sequence[ItemResult], limit: int = 10) -> Table:
    """The first ``limit`` items that were not answered right, with what came back and why."""
    table = Table(title=f"Failures (first {min(limit, len(results))} of {len(results)})", title_justify="left")
    for col in ("id", "line", "status", "tier", "output", "why"):
        table.add_column(col, overflow="fold")
    for r in results[:limit]:
        table.add_row(r.item.id, str(r.item.line), r.status.value, r.tier, r.output[:60], r.verdict.detail[:80])
    return table
