"""The ``paymaster`` command line: demo, ledger and ledger show."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import ScriptedProvider
from .._files import load_module
from ..errors import PaymasterError
from ..ledger import Ledger
from ..runtime import Agent, Runtime
from ._eval import calibrate_command, eval_command
from ._report import report_command
from ._tables import make_console, task_detail, tasks_table

app = typer.Typer(help="Paymaster: AI agents that never overspend.", no_args_is_help=True, add_completion=False)
ledger_app = typer.Typer(help="Read the cost ledger.", invoke_without_command=True)
app.add_typer(ledger_app, name="ledger")
app.command("eval")(eval_command)
app.command("calibrate")(calibrate_command)
app.command("report")(report_command)
console = make_console()

LedgerOpt = Annotated[
    str | None,
    typer.Option("--ledger", "-l", help="Ledger URL or SQLite path [default: $PAYMASTER_LEDGER or ./paymaster.db]"),
]


def _open(url: str | None) -> Ledger:
    try:
        return Ledger(url)
    except PaymasterError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@ledger_app.callback()
def ledger_list(
    ctx: typer.Context,
    ledger: LedgerOpt = None,
    limit: Annotated[int, typer.Option(help="How many tasks to list, newest first.")] = 20,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's tasks.")] = None,
    agent: Annotated[str | None, typer.Option(help="Only this agent's tasks.")] = None,
) -> None:
    """List recent tasks with their status and cost."""
    ctx.obj = ledger
    if ctx.invoked_subcommand is not None:
        return
    db = _open(ledger)
    tasks = db.tasks(limit=limit, tenant=tenant, agent=agent)
    if not tasks:
        console.print(f"No tasks in {db.url} yet. Run `paymaster demo` or your own agent first.")
        return
    console.print(tasks_table(tasks, title=f"Tasks in {db.url}"))


@ledger_app.command("show")
def ledger_show(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(help="Task id (a unique prefix is enough).")],
    ledger: LedgerOpt = None,
) -> None:
    """Show one task: its plan, every call it made and what each cost."""
    db = _open(ledger or ctx.obj)
    task = db.task(task_id)
    if task is None:
        console.print(f"[red]error:[/red] no task {task_id!r} in {db.url}; `paymaster ledger` lists the tasks")
        raise typer.Exit(1)
    console.print(task_detail(task, db.steps(task.id)))


def _examples_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "examples"


@app.command()
def demo(
    ledger: LedgerOpt = None,
    examples: Annotated[Path | None, typer.Option(help="Folder of example agents.")] = None,
) -> None:
    """Run the example agents offline on the scripted provider and print their ledger rows."""
    folder = examples or _examples_dir()
    files = sorted(folder.glob("*.py")) if folder.is_dir() else []
    if not files:
        console.print(f"[red]error:[/red] no example agents in {folder}; run from a source checkout "
                      "or pass --examples PATH")
        raise typer.Exit(2)
    task_ids: list[str] = []
    db = _open(ledger)
    for file in files:
        module = load_module(file, prefix="paymaster_example")
        agent: type[Agent] = module.AGENT
        # An example may script its model's replies; otherwise the provider's default answers.
        runtime = Runtime(ledger=db, provider=ScriptedProvider(getattr(module, "REPLY", None)))
        for text in module.INPUTS:
            outcome = runtime.run_sync(agent, text, tenant="demo", tags={"example": file.stem})
            task_ids.append(outcome.task_id)
            console.print(f"[bold]{agent.name}[/bold] {outcome.status.value}: {outcome.output[:100]!r}")
    tasks = [t for t in (db.task(i) for i in task_ids) if t is not None]
    console.print(tasks_table(tasks, title=f"Demo tasks in {db.url}"))
    console.print("Inspect one with: paymaster ledger show <task>")


def main() -> None:
    """Entry point of the ``paymaster`` command."""
    app()
