"""The ``paymaster`` command line: demo, ledger and ledger show."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from .. import __version__
from ..errors import PaymasterError
from ._eval import calibrate_command, eval_command
from ._finops import export_tasks, open_or_exit, reconcile_command, statement_command
from ._parsing import PlainCommand, PlainGroup
from ._report import report_command
from ._tables import LEDGER_HELP, make_console, open_ledger, task_detail, tasks_table, when

if TYPE_CHECKING:
    from ..ledger import Ledger

# Start-up is part of every command: the SDKs, SQLModel and the runtime are imported inside the
# commands that need them, so `paymaster --help` and the reading commands start in a fraction of a second.

app = typer.Typer(help="Paymaster: AI agents that never overspend.", no_args_is_help=True, add_completion=False,
                  cls=PlainGroup)
ledger_app = typer.Typer(help="Read the cost ledger.", invoke_without_command=True, cls=PlainGroup)
app.add_typer(ledger_app, name="ledger")
app.command("eval", cls=PlainCommand)(eval_command)
app.command("calibrate", cls=PlainCommand)(calibrate_command)
app.command("report", cls=PlainCommand)(report_command)
app.command("statement", cls=PlainCommand)(statement_command)
app.command("reconcile", cls=PlainCommand)(reconcile_command)
console = make_console()

LedgerOpt = Annotated[str | None, typer.Option("--ledger", "-l", help=LEDGER_HELP)]
WideOpt = Annotated[bool, typer.Option("--wide", "-w", help="Every column (needs about 140 columns).")]


def _version(value: bool) -> None:
    if value:
        console.print(f"paymaster {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Paymaster: AI agents that never overspend."""


def _open(url: str | None, *, must_exist: bool = True) -> Ledger:
    try:
        return open_ledger(url, must_exist=must_exist)
    except PaymasterError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@ledger_app.callback()
def ledger_list(
    ctx: typer.Context,
    ledger: LedgerOpt = None,
    limit: Annotated[int, typer.Option(help="How many tasks to list, newest first.")] = 20,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's tasks.")] = None,
    agent: Annotated[str | None, typer.Option(help="Only this agent's tasks.")] = None,
    wide: WideOpt = False,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text (a table), json or csv.")] = "text",
) -> None:
    """List recent tasks with their status and cost."""
    ctx.obj = ledger
    if ctx.invoked_subcommand is not None:
        return
    if fmt != "text":
        export_tasks(ledger, fmt, limit=limit, tenant=tenant, agent=agent)
        return
    from ..ledger._tasklist import recent_tasks

    with open_or_exit(ledger) as reader:
        tasks = recent_tasks(reader, limit=limit, tenant=tenant, agent=agent)
    if not tasks:
        console.print(f"No tasks in {reader.url} yet. Run `paymaster demo` or your own agent first.", markup=False)
        return
    console.print(tasks_table(tasks, title=f"Tasks in {reader.url}", wide=wide))


@ledger_app.command("show", cls=PlainCommand)
def ledger_show(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(help="Task id (a unique prefix is enough).")],
    ledger: LedgerOpt = None,
    wide: WideOpt = False,
) -> None:
    """Show one task: its plan, every call it made and what each cost."""
    from ..ledger._tasklist import find_task, task_steps, tasks_starting

    with open_or_exit(ledger or ctx.obj) as reader:
        task = find_task(reader, task_id)
        if task is None:
            matches = tasks_starting(reader, task_id, 11)  # 11: to tell "more than 10"
            shown = escape(repr(task_id))
            if len(matches) > 1:
                count = "more than 10" if len(matches) > 10 else str(len(matches))
                console.print(f"[red]error:[/red] {shown} is the start of {count} task ids; give more of the id:",
                              highlight=False)
                for t in matches[:10]:
                    console.print(f"  {t.id}  {when(t.created_at)} UTC  {t.agent}  {t.tenant}  {t.status}",
                                  markup=False, highlight=False)
            else:
                console.print(f"[red]error:[/red] no task {shown} in {reader.url}; `paymaster ledger` lists the "
                              "tasks", highlight=False)
            raise typer.Exit(1)
        steps = task_steps(reader, task.id)
    console.print(task_detail(task, steps, wide=wide))


def _examples_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "examples"


@app.command(cls=PlainCommand)
def demo(
    ledger: LedgerOpt = None,
    examples: Annotated[Path | None, typer.Option(help="Folder of example agents.")] = None,
) -> None:
    """Run the example agents offline on the scripted provider and print their ledger rows."""
    from .._files import load_module
    from ..providers import ScriptedProvider
    from ..runtime import Agent, Runtime

    folder = examples or _examples_dir()
    files = sorted(folder.glob("*.py")) if folder.is_dir() else []
    if not files:
        console.print(f"[red]error:[/red] no example agents in {folder}; run from a source checkout "
                      "or pass --examples PATH")
        raise typer.Exit(2)
    task_ids: list[str] = []
    db = _open(ledger, must_exist=False)
    for file in files:
        module = load_module(file, prefix="paymaster_example")
        agent: type[Agent] = module.AGENT
        # An example may script its model's replies; otherwise the provider's default answers.
        runtime = Runtime(ledger=db, provider=ScriptedProvider(getattr(module, "REPLY", None)))
        for text in module.INPUTS:
            outcome = runtime.run_sync(agent, text, tenant="demo", tags={"example": file.stem})
            task_ids.append(outcome.task_id)
            console.print(f"[bold]{agent.name}[/bold] {outcome.status.value}: {escape(repr(outcome.output[:100]))}")
    tasks = [t for t in (db.task(i) for i in task_ids) if t is not None]
    console.print(tasks_table(tasks, title=f"Demo tasks in {db.url}"))
    console.print("Inspect one with: paymaster ledger show <task>")


def main() -> None:
    """Entry point of the ``paymaster`` command."""
    app()
