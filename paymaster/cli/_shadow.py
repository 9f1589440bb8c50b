"""``paymaster calibrate --from-ledger``: check the router's quality target on shadow-evaluated live traffic,
and with ``--refit FILE --out NEW`` re-fit the router file on those records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import PaymasterError
from ._tables import make_console

if TYPE_CHECKING:
    from ..evals._shadow import LiveQuality, Refit
    from ..ledger._shadows import ShadowRecord

console = make_console()


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _check_out(refit: Path | None, out: Path | None) -> None:
    """A re-fit writes only to a file the user named, and never over something that is not a router file."""
    if refit is None:
        if out is not None:
            raise _fail("--out with --from-ledger needs --refit FILE (the router file to re-fit on the shadow records)")
        return
    if out is None:
        raise _fail(f"name the file to write the re-fitted router to with --out (it may be {refit} itself, to "
                    "replace it); nothing is written to a file you did not name")
    if out.exists():
        try:
            kind = json.loads(out.read_text(encoding="utf-8")).get("format")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            kind = None
        if kind not in ("paymaster.thresholds", "paymaster.policy"):
            raise _fail(f"--out {out} exists and is not a thresholds or policy file: not overwritten; choose another "
                        "path")


def calibrate_from_ledger(
    ledger: str, target: str, delta: float, agent: str | None, since: float | None, *, refit: Path | None = None,
    out: Path | None = None,
) -> None:
    """Print the router's shadow-measured quality with its bound; exit 1 when the target no longer holds.

    With ``refit``: re-fit that router file on the records and write the cheapest certified setting to ``out``
    (exit 1, writing nothing, when the records are too few to certify even the reference tier alone).
    """
    from ..evals._shadow import live_quality
    from ..ledger._queries import Scope
    from ..ledger._reader import open_reader
    from ..ledger._shadows import shadow_records, shadow_texts

    _check_out(refit, out)
    try:
        share = float(target)
        if not delta:
            raise ValueError("--delta must be above 0 to check a target on live traffic (e.g. 0.1)")
        with open_reader(ledger, must_exist=True) as db:
            records = shadow_records(db, Scope(since=since, agent=agent))
            texts = shadow_texts(db, records) if refit is not None else {}
        rows = live_quality(records, share, delta)
    except (ValueError, PaymasterError) as exc:
        raise _fail(str(exc)) from None
    if not rows[0].scored:
        console.print("No scored shadow records in this ledger: run with Runtime(shadow=Shadow(rate=..., tier=..., "
                      "budget=...)) first.", markup=False)
        raise typer.Exit(2)
    _print_check(rows, records, share, delta)
    if refit is not None:
        assert out is not None
        _refit(refit, out, records, texts, share, delta)
        return
    overall = rows[0]
    if overall.holds:
        console.print(f"The target {share:g} holds on live traffic with probability >= {1 - delta:g} "
                      f"(lower bound {overall.bound:.3f}).", markup=False)
        return
    worst = min(rows[1:], key=lambda r: r.bound)
    console.print(f"The target {share:g} is not certified on live traffic (lower bound {overall.bound:.3f} on "
                  f"{overall.scored:,} records; the weakest route is {worst.label}, {100 * worst.quality:.1f}% "
                  "matched). Re-fit the router on these records (--refit FILE --out NEW), record again "
                  "(paymaster eval --record) and re-calibrate, or route that work to the reference tier.",
                  markup=False, soft_wrap=True)
    raise typer.Exit(1)


def _print_check(rows: list[LiveQuality], records: list[ShadowRecord], share: float, delta: float) -> None:
    from ..ledger._shadows import shadow_days

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


def _refit(
    source: Path, out: Path, records: list[ShadowRecord], texts: dict[str, str], share: float,
    delta: float,
) -> None:
    from ..evals._shadow import refit, write_refit

    try:
        fit = refit(source, records, texts, share, delta)
    except (ValueError, PaymasterError) as exc:
        raise _fail(str(exc)) from None
    for what, n in fit.left_out.items():
        console.print(f"Left out {n:,} record(s): {what}.", markup=False, soft_wrap=True)
    chosen = fit.chosen
    if chosen is None:
        needed = fit.needed()
        more = ("no number of records certifies a target of 1" if needed is None else
                f"certifying {share:g} at delta {delta:g} takes at least {needed:,} scored records")
        console.print(f"Too few records to re-fit {source.name}: {len(fit.records):,} scored shadow records it routed, "
                      f"and {more}, even with every subtask on {fit.reference}. Nothing written; shadow more traffic "
                      "(a higher Shadow rate, or wait) and re-fit.", markup=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(_refit_table(fit, chosen))
    try:
        written = write_refit(fit, out)
    except (OSError, PaymasterError) as exc:
        raise _fail(str(exc)) from None
    setting = fit.settings[chosen]
    last = len(fit.settings) - 1
    if chosen == last:
        what = f"{source.name} as it is holds the target ({setting.label}); its file is written with the live bound"
    elif setting.fallback:
        what = (f"nothing cheaper than {fit.reference} is certified: the re-fitted router sends every subtask to "
                f"{fit.reference}")
    else:
        what = f"re-fitted to {setting.label} (was {fit.settings[last].label})"
    console.print(f"{what}. Written to {written}; load it with Runtime(router={str(written)!r}).", markup=False,
                  soft_wrap=True)


def _refit_table(fit: Refit, chosen: int) -> Table:
    table = Table(title=f"Re-fit of {fit.source.name} on {len(fit.records):,} shadow records (target {fit.target:g}, "
                        f"delta {fit.delta:g}; a subtask moved to a tier it did not run on counts as a miss)",
                  title_justify="left")
    for name in ("setting", "matched", "lower bound", "certified", "routes of the shadowed subtasks"):
        table.add_column(name, justify="left" if name in ("setting", "routes of the shadowed subtasks") else "right")
    last = len(fit.settings) - 1
    for i, tag in ((last, "as it is"), (chosen, "re-fitted")) if chosen != last else ((last, "as it is"),):
        c = fit.certificates[i]
        split = ", ".join(f"{route} {n:,}" for route, n in sorted(fit.split(i).items()))
        table.add_row(escape(f"{tag}: {fit.settings[i].label}"), f"{100 * c.estimate:.1f}%", f"{100 * c.bound:.1f}%",
                      "yes" if c.passed else "no", escape(split))
    return table
