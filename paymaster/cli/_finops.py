"""FinOps commands: ``paymaster statement``, ``paymaster reconcile`` and machine-readable ``paymaster ledger``."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import PaymasterError
from ..ledger._reader import Reader, open_reader
from ..ledger._views import TASK_COLUMNS, task_rows
from ._export import FORMATS, emit, to_csv, to_json
from ._tables import LEDGER_HELP, make_console, usd

if TYPE_CHECKING:
    from ..ledger._statements import Statement

console = make_console()


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def open_or_exit(url: str | None) -> Reader:
    """A reader over the ledger, or a clear error and exit status 2."""
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
    from ..ledger._statements import LINE_COLUMNS, line_dict, statement, statement_dict
    from ..ledger._views import usd_text
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
        rows.append({"line": "total", "total_usd": usd_text(found.total)})
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
