"""Tables, markdown and the plot of the RouterBench bench (see routerbench.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from paymaster.evals import PolicyResult
from paymaster.evals._plot import plot_cost_quality
from paymaster.evals._tables import selection_table, usd


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    label: str
    result: PolicyResult
    paymaster: bool = False
    short: str = ""
    """A shorter label for the plot's legend."""


def _cells(row: Row, reference: PolicyResult, goal_accuracy: float, goal_cost: float) -> list[str]:
    s, ref = row.result.summary, reference.summary
    assert s.cost_usd is not None and ref.cost_usd is not None
    share = float(s.cost_usd / ref.cost_usd)
    goal = ("yes" if s.accuracy >= goal_accuracy and share <= goal_cost else "no") if row.paymaster else ""
    return [
        row.label,
        f"{s.accuracy:.4f}",
        f"{s.accuracy / ref.accuracy:.1%}",
        usd(s.cost_usd, 4),
        f"{share:.1%}",
        usd(s.cost_per_success_usd, 6),
        goal,
    ]


HEADERS = ["policy", "accuracy", "of GPT-4 acc.", "cost", "of GPT-4 cost", "cost / correct", "meets goal"]


def print_rows(rows: list[Row], reference: PolicyResult, goal_accuracy: float, goal_cost: float) -> None:
    """The results as a Rich table on stdout."""
    table = Table(title=f"RouterBench test split, pooled ({reference.summary.items} prompts)", title_justify="left")
    for h in HEADERS:
        table.add_column(h, justify="left" if h == "policy" else "right")
    for row in rows:
        table.add_row(*_cells(row, reference, goal_accuracy, goal_cost), style="bold" if row.paymaster else "")
    console = Console(width=180)
    console.print(table)
    console.print(f"goal: accuracy >= {goal_accuracy} at <= {goal_cost:.0%} of all-GPT-4 cost")


def markdown(
    rows: list[Row], reference: PolicyResult, goal_accuracy: float, goal_cost: float, selection: PolicyResult
) -> str:
    """The results table (and the learned router's model selection) as markdown."""
    out = [
        f"| {' | '.join(HEADERS)} |",
        f"|{'|'.join(['---'] + ['---:'] * (len(HEADERS) - 1))}|",
    ]
    for row in rows:
        cells = _cells(row, reference, goal_accuracy, goal_cost)
        if row.paymaster:
            cells[0] = f"**{cells[0]}**"
        out.append(f"| {' | '.join(cells)} |")
    out += [
        "",
        f"Goal: accuracy >= {goal_accuracy} at <= {goal_cost:.0%} of all-GPT-4 cost.",
        "",
        f"Model selection of *{selection.name}* on the test split:",
        "",
        "| task type | model | prompts | share | accuracy | cost |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in selection.selection():
        out.append(
            f"| {r.task_type} | {r.model} | {r.summary.items} | {r.share:.0%} | {r.summary.accuracy:.3f} | "
            f"{usd(r.summary.cost_usd, 4)} |"
        )
    return "\n".join(out) + "\n"


def print_selection(result: PolicyResult) -> None:
    """Which models the router chose per task type, on stdout."""
    Console(width=180).print(selection_table(result.selection(), title=f"Model selection: {result.name}"))


def write_plot(
    path: Path,
    rows: list[Row],
    reference: PolicyResult,
    curves: dict[str, list[tuple[float, float]]],
    goal_accuracy: float,
    goal_cost: float,
) -> Path:
    """Every single model, the oracle, the learned routers' curves and Paymaster's chosen settings."""
    ref_cost = reference.summary.cost_usd
    assert ref_cost is not None

    def point(r: PolicyResult) -> tuple[float, float]:
        cost = r.summary.cost_usd
        assert cost is not None
        return float(cost / ref_cost), r.summary.accuracy

    singles = {
        row.label.removeprefix("all "): point(row.result)
        for row in rows
        if not row.paymaster and not row.label.startswith("oracle")
    }
    extra = {row.label: point(row.result) for row in rows if row.label.startswith("oracle")}
    chosen = {row.short or row.label: point(row.result) for row in rows if row.paymaster and row.short}
    return plot_cost_quality(
        path,
        singles=singles,
        curves=curves,
        chosen=chosen,
        extra=extra,
        goal=(goal_cost, goal_accuracy),
        title=f"RouterBench test split ({reference.summary.items} prompts): cost vs accuracy",
        reference="GPT-4",
    )
