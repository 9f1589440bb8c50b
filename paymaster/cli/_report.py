"""``paymaster report``: where the money went, what it bought and what looks wrong."""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import PaymasterError
from ._export import FORMATS, emit, to_csv, to_json
from ._tables import LEDGER_HELP, make_console
from ._tables import usd as fmt_usd

if TYPE_CHECKING:  # imported when the command runs, so `paymaster --help` does not pay for them
    from ..ledger._queries import Anomalies, Distribution, Scope, Spend, Summary
    from ..ledger._views import Report

console = make_console()

_SPAN = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


class _Usage(Exception):
    """A usage mistake on the command line: printed, then the command exits with status 2."""


def parse_when(text: str, *, now: float | None = None) -> float:
    """Epoch seconds from a span back from now ("7d", "24h", "30m", "2w") or an ISO date/time (UTC if naive)."""
    span = _SPAN.match(text)
    if span:
        return (time.time() if now is None else now) - int(span[1]) * _UNIT_SECONDS[span[2]]
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise _Usage(f"expected a span like 7d, 24h, 30m or an ISO date like 2025-01-31, got {text!r}") from None
    # A naive date means UTC, like the report's days, so the result does not depend on the machine's zone.
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def parse_tags(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` options as a dict."""
    tags = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise _Usage(f"--tag must be KEY=VALUE, got {pair!r}")
        tags[key.strip()] = value.strip()
    return tags


def summary_table(s: Summary) -> Table:
    """Tasks, success rate, cost, baseline, savings, cost per outcome and the cache."""
    table = Table(title="Summary", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    rate = "-" if s.success_rate is None else f"{100 * s.success_rate:.1f}%"
    table.add_row("tasks", f"{s.tasks:,}")
    table.add_row("succeeded", f"{s.succeeded:,} ({rate})")
    if s.unpriced:
        table.add_row("unpriced", f"{s.unpriced:,} tasks had a call of unknown price; left out of the money below")
    table.add_row("cost", fmt_usd(s.cost))
    table.add_row("all-frontier baseline", fmt_usd(s.baseline))
    share = f" ({100 * s.savings / s.baseline:.1f}%)" if s.baseline else ""
    table.add_row("savings", fmt_usd(s.savings) + share)
    table.add_row("cost per successful outcome", fmt_usd(s.cost_per_success) if s.cost_per_success is not None else "-")
    table.add_row("cache hits", f"{s.cache_hits:,} (saved {fmt_usd(s.cache_saved)})")
    return table


def distribution_table(rows: list[Distribution]) -> Table:
    """Per agent: task count and the p50/p90/p99/max of task cost."""
    table = Table(title="Cost per task, by agent", title_justify="left")
    for name in ("agent", "tasks", "p50", "p90", "p99", "max"):
        table.add_column(name, justify="left" if name == "agent" else "right", no_wrap=name != "agent")
    for d in rows:
        tasks = f"{d.tasks:,}" + (f" ({d.unpriced} unpriced)" if d.unpriced else "")
        table.add_row(d.agent, tasks, fmt_usd(d.p50), fmt_usd(d.p90), fmt_usd(d.p99), fmt_usd(d.max))
    return table


def spend_table(title: str, key: str, rows: list[Spend]) -> Table:
    """One row per spender: its key, tasks and cost."""
    table = Table(title=title, title_justify="left")
    table.add_column(key)
    table.add_column("tasks", justify="right")
    table.add_column("cost", justify="right", no_wrap=True)
    for s in rows:
        tasks = f"{s.tasks:,}" + (f" ({s.unpriced} unpriced)" if s.unpriced else "")
        table.add_row("(untagged)" if s.key is None else s.key, tasks, fmt_usd(s.cost))
    return table


def anomaly_tables(found: Anomalies) -> list[Table]:
    """Anomalous tasks (the costliest first) and days, one table each when there are any."""
    tables = []
    if found.tasks:
        n, total = len(found.tasks), found.task_count
        shown = "" if total <= n else f", the costliest {n} of {total:,}"
        t = Table(title=f"Anomalous tasks (over 3x their agent's median{shown})", title_justify="left")
        for name in ("task", "when (UTC)", "agent", "tenant", "cost", "agent median"):
            t.add_column(name, justify="right" if name in ("cost", "agent median") else "left", no_wrap=True)
        for a in found.tasks:
            when = dt.datetime.fromtimestamp(a.created_at, dt.UTC).strftime("%Y-%m-%d %H:%M")
            t.add_row(a.task_id, when, a.agent, a.tenant, fmt_usd(a.cost), fmt_usd(a.median))
        tables.append(t)
    if found.days:
        d = Table(title="Anomalous days (over mean + 2σ of the 30 before)", title_justify="left")
        for name in ("day (UTC)", "cost", "mean", "threshold"):
            d.add_column(name, justify="left" if name.startswith("day") else "right", no_wrap=True)
        for day in found.days:
            d.add_row(day.day.isoformat(), fmt_usd(day.cost), fmt_usd(day.mean), fmt_usd(day.threshold))
        tables.append(d)
    return tables


def describe_window(scope: Scope) -> str:
    """The report's window and filters in words, times in UTC."""

    def stamp(ts: float) -> str:
        return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")

    if scope.since is None and scope.until is None:
        window = "all finished tasks"
    elif scope.until is None:
        window = f"finished tasks created since {stamp(scope.since or 0)}"
    elif scope.since is None:
        window = f"finished tasks created before {stamp(scope.until)}"
    else:
        window = f"finished tasks created from {stamp(scope.since)} to {stamp(scope.until)}"
    filters = [f"{name} {value}" for name, value in (("tenant", scope.tenant), ("agent", scope.agent)) if value]
    filters += [f"tag {k}={v}" for k, v in sorted(scope.tags.items())]
    return window + (f", {', '.join(filters)}" if filters else "")


def print_report(report: Report) -> None:
    """The report as terminal tables."""
    console.print(summary_table(report.summary))
    console.print(distribution_table(report.distributions))
    console.print(spend_table(f"Top spenders by {report.by}", report.by, report.top))
    for key, rows in report.showback.items():
        console.print(spend_table(f"Showback by tag {key!r}", key, rows))
    found = report.anomalies
    for table in anomaly_tables(found):
        console.print(table)
    if found.task_count > len(found.tasks):
        console.print(f"{found.task_count - len(found.tasks):,} more anomalous tasks: --anomalies N lists more "
                      "(0 for all), --format csv writes them for a spreadsheet.")
    if not (found.tasks or found.days):
        console.print("No anomalies: no task over 3x its agent's median, no day over mean + 2σ.")


def report_command(
    ledger: Annotated[str | None, typer.Option("--ledger", "-l", help=LEDGER_HELP)] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's tasks.")] = None,
    agent: Annotated[str | None, typer.Option(help="Only this agent's tasks.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Only tasks with this tag, as KEY=VALUE (repeatable).")] = None,
    since: Annotated[str | None, typer.Option(help="Only tasks since: 7d, 24h, 30m, 2w or an ISO date.")] = None,
    until: Annotated[str | None, typer.Option(help="Only tasks before: a span back from now or an ISO date.")] = None,
    by: Annotated[str, typer.Option(help="Rank top spenders by tenant, agent or tag:KEY.")] = "tenant",
    limit: Annotated[int, typer.Option(help="How many top spenders to list.")] = 10,
    top_anomalies: Annotated[
        int, typer.Option("--anomalies", help="How many anomalous tasks to list, costliest first (0: all).")
    ] = 10,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text (tables), json or csv (one figure a row).")] = "text",
    html: Annotated[
        Path | None, typer.Option(help="Also write the report as one self-contained HTML file with charts.")
    ] = None,
) -> None:
    """Report cost per outcome, cost percentiles, top spenders, showback by tag, savings and anomalies."""
    from ..ledger._queries import Scope
    from ..ledger._reader import open_reader
    from ..ledger._views import build_report, report_dict, report_rows

    try:
        scope = Scope(
            since=None if since is None else parse_when(since),
            until=None if until is None else parse_when(until),
            tenant=tenant, agent=agent, tags=parse_tags(tag or []),
        )
        if not (by in ("tenant", "agent") or (by.startswith("tag:") and len(by) > 4)):
            raise _Usage(f"--by must be tenant, agent or tag:KEY, got {by!r}")
        if fmt not in FORMATS:
            raise _Usage(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        if top_anomalies < 0 or limit < 0:
            raise _Usage("--anomalies and --limit count rows: 0 or more")
    except _Usage as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    try:
        db = open_reader(ledger, must_exist=True)
    except PaymasterError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    with db:
        report = build_report(db, scope, by=by, limit=limit, anomaly_limit=top_anomalies or None,
                              charts=html is not None)
    if fmt == "text" and not report.summary.tasks:
        filtered = any(v is not None for v in (since, until, tenant, agent, tag or None))
        console.print(
            f"No finished tasks in {report.url}{' match these filters' if filtered else ' yet'}. "
            + ("Widen --since or drop a filter." if filtered else "Run `paymaster demo` or your own agent first.")
        )
        return
    if html is not None:
        from ._html import render_html

        html.write_text(render_html(report), encoding="utf-8")
    if fmt == "json":
        emit(to_json(report_dict(report)))
    elif fmt == "csv":
        emit(to_csv(report_rows(report), ["section", "key", "metric", "value"]))
    else:
        console.print(f"Report on {report.url}: {describe_window(scope)}. Days are UTC days.", markup=False)
        print_report(report)
        if html is not None:
            console.print(f"Wrote {html} (open it in any browser; it needs no network).")
