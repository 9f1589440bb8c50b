"""``paymaster calibrate --from-ledger``: check the router's quality target on shadow-evaluated live traffic."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import PaymasterError
from ._tables import make_console

console = make_console()


def calibrate_from_ledger(ledger: str, target: str, delta: float, agent: str | None, since: float | None) -> None:
    """Print the router's shadow-measured quality with its bound; exit 1 when the target no longer holds."""
    from ..evals._shadow import live_quality
    from ..ledger._queries import Scope
    from ..ledger._reader import open_reader
    from ..ledger._shadows import shadow_days, shadow_records

    try:
        share = float(target)
        if not delta:
            raise ValueError("--delta must be above 0 to check a target on live traffic (e.g. 0.1)")
        with open_reader(ledger, must_exist=True) as db:
            records = shadow_records(db, Scope(since=since, agent=agent))
        rows = live_quality(records, share, delta)
    except (ValueError, PaymasterError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if not rows[0].scored:
        console.print("No scored shadow records in this ledger: run with Runtime(shadow=Shadow(rate=..., tier=..., "
                      "budget=...)) first.", markup=False)
        raise typer.Exit(2)
    table = Table(title=f"Quality on live traffic: the share of shadowed subtasks matching the reference tier "
                        f"(lower bound at delta {delta})", title_justify="left")
    for name in ("routed", "shadowed", "matched", "quality", "lower bound", f"holds {share:g}"):
        table.add_column(name, justify="left" if name == "routed" else "right")
    for row in rows:
        table.add_row(escape(row.label), f"{row.scored:,}", f"{row.matched:,}", f"{100 * row.quality:.1f}%",
                      f"{100 * row.bound:.1f}%", "yes" if row.holds else "no")
    console.print(table)
    days = shadow_days(records)
    console.print("Per day (UTC): " + ", ".join(
        f"{d.day} {'-' if d.quality is None else f'{100 * d.quality:.1f}%'} of {d.scored}" for d in days),
        markup=False, soft_wrap=True)
    overall = rows[0]
    if overall.holds:
        console.print(f"The target {share:g} holds on live traffic with probability >= {1 - delta:g} "
                      f"(lower bound {overall.bound:.3f}).", markup=False)
        return
    worst = min(rows[1:], key=lambda r: r.bound)
    console.print(f"The target {share:g} is not certified on live traffic (lower bound {overall.bound:.3f} on "
                  f"{overall.scored:,} records; the weakest route is {worst.label}, {100 * worst.quality:.1f}% "
                  "matched). Record again (paymaster eval --record) and re-calibrate, or route that work to the "
                  "reference tier.", markup=False, soft_wrap=True)
    raise typer.Exit(1)
