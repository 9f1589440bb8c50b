"""FinOps commands: ``paymaster statement``, ``paymaster reconcile`` and machine-readable ``paymaster ledger``."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import PaymasterError
from ._export import FORMATS, emit, to_csv, to_json
from ._tables import LEDGER_HELP, make_console, usd

if TYPE_CHECKING:
    from ..ledger._reader import Reader
    from ..ledger._reconcile import Reconciliation
    from ..ledger._statements import Statement

console = make_console()


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def open_or_exit(url: str | None) -> Reader:
    """A reader over the ledger, or a clear error and exit status 2."""
    from ..ledger._reader import open_reader

    try:
        return open_reader(url, must_exist=True)
    except PaymasterError as exc:
        raise _fail(str(exc)) from None


def check_format(fmt: str) -> None:
    """Exit 2 on an unknown ``--format``."""
    if fmt not in FORMATS:
        raise _fail(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def export_tasks(url: str | None, fmt: str, *, limit: int, tenant: str | None, agent: str | None) -> None:
    """``paymaster ledger --format json|csv``: the recent tasks, newest first."""
    from ..ledger._tasklist import TASK_COLUMNS, task_rows

    check_format(fmt)
    with open_or_exit(url) as reader:
        rows = task_rows(reader, limit=limit, tenant=tenant, agent=agent)
    emit(to_json(rows) if fmt == "json" else to_csv(rows, TASK_COLUMNS))


def statement_command(
    ledger: Annotated[str | None, typer.Option("--ledger", "-l", help=LEDGER_HELP)] = None,
    month: Annotated[str | None, typer.Option(help="The month, YYYY-MM (UTC) [default: this month].")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's charges.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Only tasks with this tag, as KEY=VALUE (repeatable).")] = None,
    by: Annotated[str, typer.Option(help="One line per agent, or per value of a tag: tag:KEY.")] = "agent",
    shared: Annotated[
        str, typer.Option(help="Planning, summarising, evals, aggregation: 'separate' lines or 'allocate'd in "
                               "proportion to each line's direct cost.")
    ] = "separate",
    fmt: Annotated[str, typer.Option("--format", "-f", help="text (a table), json or csv.")] = "text",
) -> None:
    """A month's statement for showback or chargeback: calls, tokens, cost and cost per outcome, line by line."""
    from .._money import plain_usd
    from ..ledger._statements import LINE_COLUMNS, line_dict, statement, statement_dict
    from ._report import _Usage, parse_tags

    check_format(fmt)
    month = month or dt.datetime.now(dt.UTC).strftime("%Y-%m")
    try:
        tags = parse_tags(tag or [])
    except _Usage as exc:
        raise _fail(str(exc)) from None
    with open_or_exit(ledger) as reader:
        try:
            found = statement(reader, month, tenant=tenant, tags=tags, by=by, shared=shared)  # type: ignore[arg-type]
        except ValueError as exc:
            raise _fail(str(exc)) from None
    if fmt == "json":
        emit(to_json(statement_dict(found)))
    elif fmt == "csv":
        rows = [line_dict(line) for line in found.lines]
        rows.append({"line": "total", "total_usd": plain_usd(found.total)})
        emit(to_csv(rows, LINE_COLUMNS))
    else:
        _print_statement(found)


def _print_statement(found: Statement) -> None:
    who = ", ".join([f"tenant {found.tenant}"] * bool(found.tenant) + [f"{k}={v}" for k, v in found.tags.items()])
    table = Table(title=f"Statement {found.month} (UTC){': ' + who if who else ''}, by {found.by}",
                  title_justify="left")
    for name in ("line", "tasks", "outcomes", "calls", "tools", "tokens in / out", "direct", "shared", "total",
                 "per outcome"):
        table.add_column(name, justify="left" if name == "line" else "right", no_wrap=name != "line")
    for line in found.lines:
        table.add_row(
            line.name, f"{line.tasks:,}" if not line.shared else "", f"{line.outcomes:,}" if not line.shared else "",
            f"{line.calls:,}" + (f" ({line.unpriced_calls} unpriced)" if line.unpriced_calls else ""),
            f"{line.tool_calls:,}", f"{line.input_tokens:,} / {line.output_tokens:,}", usd(line.direct),
            usd(line.allocated) if found.shared_mode == "allocate" else "", usd(line.total),
            usd(line.cost_per_outcome) if line.cost_per_outcome is not None else "-",
        )
    table.add_row("total", "", "", "", "", "", "", "", usd(found.total), "", style="bold")
    console.print(table)
    if not found.lines:
        console.print(f"No charges in {found.month} for this selection in {found.url}.", markup=False)
    elif found.shared_mode == "allocate" and found.shared_by_kind:
        parts = ", ".join(f"{k} {usd(v)}" for k, v in found.shared_by_kind.items())
        console.print(f"Shared costs ({parts}) are allocated in proportion to each line's direct cost.", markup=False)


def reconcile_command(
    files: Annotated[list[Path], typer.Argument(help="Provider exports: OpenAI costs/usage JSON, Anthropic cost/usage "
                                                     "report JSON, or a CSV of date, model, tokens, cost.")],
    ledger: Annotated[str | None, typer.Option("--ledger", "-l", help=LEDGER_HELP)] = None,
    provider: Annotated[
        str | None, typer.Option(help="Ledger provider name to compare [default: the export's: openai, anthropic; "
                                      "all providers for a CSV].")
    ] = None,
    tolerance: Annotated[str, typer.Option(help="Largest cost difference per day and model that still matches, "
                                                "in dollars.")] = "0.01",
    show_all: Annotated[bool, typer.Option("--all", help="List matching rows too, not only differences.")] = False,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text (a table), json or csv (every row).")] = "text",
) -> None:
    """Compare the ledger with the provider's own usage and cost export, by UTC day and model.

    Exits 1 when anything differs: spend the ledger does not know, ledger spend the provider did not bill,
    or a cost or token count that disagrees.
    """
    from ..ledger._bills import load_bill, merge
    from ..ledger._reconcile import RECON_COLUMNS, recon_dict, reconcile, reconciliation_dict

    check_format(fmt)
    try:
        limit = Decimal(tolerance)
        if not limit.is_finite() or limit < 0:
            raise InvalidOperation
    except InvalidOperation:
        raise _fail(f"--tolerance is a dollar amount like 0.01, got {tolerance!r}") from None
    try:
        bill = merge(load_bill(f) for f in files)
    except PaymasterError as exc:
        raise _fail(str(exc)) from None
    with open_or_exit(ledger) as reader:
        found = reconcile(reader, bill, provider=provider, tolerance=limit)
    if fmt == "json":
        emit(to_json(reconciliation_dict(found)))
    elif fmt == "csv":
        emit(to_csv([recon_dict(r) for r in found.rows], RECON_COLUMNS))
    else:
        _print_reconciliation(found, show_all)
    if found.differences:
        raise typer.Exit(1)


def _print_reconciliation(found: Reconciliation, show_all: bool) -> None:
    rows = found.rows if show_all else found.differences
    who = found.provider or "every provider"
    head = f"Ledger ({who}) against the bill, {found.first_day} to {found.last_day} (UTC days)"
    if rows:
        table = Table(title=head, title_justify="left")
        for name in ("day", "model", "status", "ledger", "bill", "difference", "ledger tokens", "bill tokens", "note"):
            table.add_column(name, justify="right" if name in ("ledger", "bill", "difference") or "tokens" in name
                             else "left", no_wrap=name not in ("note", "model"))
        style = {"match": "green", "differs": "yellow", "not in ledger": "red", "not billed": "red"}
        for r in rows:
            table.add_row(
                r.day.isoformat(), r.model, f"[{style[r.status]}]{r.status}[/]",
                "-" if r.ledger_cost is None else usd(r.ledger_cost), "-" if r.bill_cost is None else usd(r.bill_cost),
                "-" if r.difference is None else usd(r.difference),
                "-" if r.ledger_tokens is None else f"{r.ledger_tokens:,}",
                "-" if r.bill_tokens is None else f"{r.bill_tokens:,}", escape(r.note),
            )
        console.print(table)
    else:
        console.print(head, markup=False)
    matched = len(found.rows) - len(found.differences)
    console.print(
        f"{matched} of {len(found.rows)} day-model rows match within {usd(found.tolerance)}; "
        f"ledger {usd(found.ledger_total)}, bill {usd(found.bill_total)}, "
        f"difference {usd(found.ledger_total - found.bill_total)}.",
        markup=False,
    )
