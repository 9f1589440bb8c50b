"""FinOps commands: ``paymaster statement``, ``paymaster reconcile`` and machine-readable ``paymaster ledger``."""

from __future__ import annotations

import typer
from rich.markup import escape

from ..errors import PaymasterError
from ..ledger._reader import Reader, open_reader
from ..ledger._views import TASK_COLUMNS, task_rows
from ._export import FORMATS, emit, to_csv, to_json
from ._tables import make_console

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
