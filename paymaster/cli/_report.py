"""``paymaster report``: where the money went, what it bought and what looks wrong."""

from __future__ import annotations

import datetime as dt
import re
import time
from decimal import Decimal, InvalidOperation
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
    from ..ledger._economics import AgentEconomics, Surge
    from ..ledger._queries import Anomalies, Distribution, Scope, Spend, Summary
    from ..ledger._raises import CapRaise
    from ..ledger._shadows import ShadowDay
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


def _factor(text: str) -> Decimal:
    try:
        factor = Decimal(text)
    except InvalidOperation:
        factor = Decimal(0)
    if not factor.is_finite() or factor <= 0:
        raise _Usage(f"--surge-factor is a number above zero such as 1.5, got {text!r}")
    return factor


def parse_tags(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` options as a dict."""
    tags = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise _Usage(f"--tag must be KEY=VALUE, got {pair!r}")
        tags[key.strip()] = value.strip()
    return tags


def parse_human_costs(pairs: list[str]) -> dict[str, Decimal]:
    """``AGENT=USD`` options as human costs per outcome by agent."""
    from ..ledger._economics import parse_human_cost

    costs: dict[str, Decimal] = {}
    for pair in pairs:
        agent, eq, value = pair.partition("=")
        try:
            usd = parse_human_cost(value.strip(), "--human-cost") if eq and agent.strip() else None
        except ValueError as exc:
            raise _Usage(str(exc)) from None
        if usd is None:
            raise _Usage(f"--human-cost must be AGENT=USD such as refund=8.50, got {pair!r}")
        costs[agent.strip()] = usd
    return costs


def agent_human_costs(paths: list[Path]) -> dict[str, Decimal]:
    """The ``human_cost_usd`` of every Agent class defined in these Python files (or folders of them)."""
    if not paths:
        return {}  # the runtime (and SQLModel) load only for --agents: the report alone starts light
    from .._files import load_module
    from ..ledger._economics import parse_human_cost
    from ..runtime import Agent

    files = [f for p in paths for f in (sorted(p.glob("*.py")) if p.is_dir() else [p])]
    costs: dict[str, Decimal] = {}
    for file in files:
        try:
            module = load_module(file, prefix="paymaster_report")
        except (ImportError, OSError, PaymasterError) as exc:
            raise _Usage(f"--agents: cannot load {file}: {exc}") from None
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Agent) and value is not Agent \
                    and value.__module__ == module.__name__:
                usd = parse_human_cost(value.human_cost_usd)  # checked when the class was defined
                if usd is not None:
                    costs[value.name] = usd
    return costs


def economics_table(rows: list[AgentEconomics]) -> Table:
    """Per agent: cost per successful outcome, the human cost, ROI and token efficiency, flagged rows in red."""
    table = Table(title="Unit economics, by agent (ROI = (human cost - cost per success) / cost per success)",
                  title_justify="left")
    for name in ("agent", "tasks", "succeeded", "cost per success", "human cost", "ROI", "output / all tokens"):
        table.add_column(name, justify="left" if name == "agent" else "right", no_wrap=name != "agent")
    for e in rows:
        per = fmt_usd(e.cost_per_success) if e.cost_per_success is not None else "-"
        roi = "-" if e.roi is None else f"{100 * e.roi:,.0f}%"
        eff = "-" if e.token_efficiency is None else f"{100 * e.token_efficiency:.1f}%"
        human = fmt_usd(e.human_cost) if e.human_cost is not None else "-"
        table.add_row(escape(e.agent), f"{e.tasks:,}", f"{e.succeeded:,}", per, human, roi, eff,
                      style="red" if e.over_human_cost else None)
    return table


def surge_table(found: list[Surge]) -> Table:
    """The changes after which cost per task jumped past the factor: what changed, when, before and after."""
    table = Table(title=f"Surges (cost per task up over {found[0].factor}x after a change of model or version)",
                  title_justify="left")
    for name in ("agent", "from (UTC)", "first task", "change", "before", "after", "ratio", "tasks before/after"):
        table.add_column(name, justify="right" if name in ("before", "after", "ratio") else "left",
                         no_wrap=name not in ("change", "agent"))
    for c in found:
        when = dt.datetime.fromtimestamp(c.at, dt.UTC).strftime("%Y-%m-%d %H:%M")
        table.add_row(escape(c.agent), when, escape(c.task_id), escape(c.describe()), fmt_usd(c.before),
                      fmt_usd(c.after), f"{c.ratio:.2f}x", f"{c.tasks_before:,} / {c.tasks_after:,}")
    return table


def shadow_table(days: list[ShadowDay]) -> Table:
    """The router's measured quality per UTC day: the share of shadowed subtasks that matched the reference tier."""
    table = Table(title="Router quality measured by shadow evaluation (live answer matched the reference tier)",
                  title_justify="left")
    for name in ("day (UTC)", "shadowed", "matched", "quality", "unscored", "eval cost"):
        table.add_column(name, justify="left" if name == "day (UTC)" else "right")
    for d in days:
        quality = "-" if d.quality is None else f"{100 * d.quality:.1f}%"
        table.add_row(d.day.isoformat(), f"{d.scored:,}", f"{d.matched:,}", quality, f"{d.unscored:,}",
                      fmt_usd(d.cost))
    return table


def raises_table(raises: list[CapRaise]) -> Table:
    """Temporary raises of agents' task caps: by how much, from when until when, and why."""
    table = Table(title="Temporary cap raises (an agent's task caps times the factor, while someone looks)",
                  title_justify="left")
    for name in ("agent", "factor", "from (UTC)", "until (UTC)", "why"):
        table.add_column(name, justify="right" if name == "factor" else "left", no_wrap=name != "why")
    for r in raises:
        start, end = (dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M") for t in (r.starts_at, r.ends_at))
        table.add_row(escape(r.agent), f"{r.factor}x", start, end, escape(r.reason))
    return table


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
    if report.shadow:
        console.print(shadow_table(report.shadow))
    if report.economics is not None:
        console.print(economics_table(report.economics))
        over = [e.agent for e in report.economics if e.over_human_cost]
        if over:
            console.print(f"Over the human cost per outcome: {', '.join(over)}.", markup=False)
        if all(e.human_cost is None for e in report.economics):
            console.print("No human costs given: --agents FILE reads human_cost_usd from agent classes, "
                          "--human-cost AGENT=USD sets one.", markup=False)
    if report.changes is not None:
        surged = [c for c in report.changes if c.surged]
        if surged:
            console.print(surge_table(surged))
        else:
            console.print(f"No surges: {len(report.changes)} change(s) of model or version, none raised cost per "
                          "task over the factor.", markup=False)
    if report.raises:
        console.print(raises_table(report.raises))


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
    human_cost: Annotated[
        list[str] | None, typer.Option(help="What a person costs per successful outcome, as AGENT=USD (repeatable).")
    ] = None,
    agents: Annotated[
        list[Path] | None,
        typer.Option(help="Python files or folders of Agent classes: their human_cost_usd, for ROI (repeatable)."),
    ] = None,
    economics: Annotated[
        bool, typer.Option("--economics", help="Per agent: cost per success, token efficiency, ROI against a "
                                               "human's cost (on with --human-cost or --agents).")
    ] = False,
    surges: Annotated[
        bool, typer.Option("--surges", help="Changes of model or agent version and cost per task before and after "
                                            "(reads every step).")
    ] = False,
    surge_factor: Annotated[
        str | None, typer.Option(help="A surge is cost per task rising over this factor after a change (implies "
                                      "--surges) [default: 1.5].")
    ] = None,
    fail_on_surge: Annotated[
        bool, typer.Option("--fail-on-surge", help="Exit with status 1 when a surge is found, for cron and CI "
                                                   "(implies --surges).")
    ] = False,
) -> None:
    """Report cost per outcome, cost percentiles, top spenders, showback by tag, savings, anomalies, unit
    economics (ROI against a human's cost) and surges after a change of model or agent version."""
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
        factor = _factor(surge_factor or "1.5")
        costs = {**agent_human_costs(agents or []), **parse_human_costs(human_cost or [])}
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
                              charts=html is not None, economics=economics, human_costs=costs,
                              surges=surges or fail_on_surge or surge_factor is not None, surge_factor=factor)
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
    if fail_on_surge and any(c.surged for c in report.changes or []):
        raise typer.Exit(1)
