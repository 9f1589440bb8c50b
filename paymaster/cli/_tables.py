"""Rich renderings of ledger rows, sized for an 80-column terminal (``--wide`` shows every column)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from .._money import from_picos

if TYPE_CHECKING:
    from ..ledger import Ledger, StepRecord, TaskRecord
    from ..ledger._tasklist import StepRow, TaskDetail, TaskRow

_STATUS_STYLE = {"succeeded": "green", "budget_exceeded": "yellow", "failed": "red", "running": "cyan"}
_MICRO = Decimal("0.000001")
# Parentheses, not brackets: Typer renders option help as Rich markup, where "[default: ...]" is a tag.
LEDGER_HELP = "Ledger URL or SQLite path (default: $PAYMASTER_LEDGER, else ./paymaster.db)."


def make_console() -> Console:
    """A Rich console; piped output gets a wide page so each ledger row stays on one line."""
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 160
    return console


def open_ledger(url: str | None, *, must_exist: bool) -> Ledger:
    """Open a ledger for a command; ``must_exist`` (read-only commands) never creates a database.

    Raises PaymasterError with a one-line message (missing directory or file, not a ledger).
    """
    from ..ledger import Ledger, resolve_url
    from ..ledger._paths import check_ledger_path

    check_ledger_path(resolve_url(url), must_exist=must_exist)
    return Ledger(url)


def usd(value: Decimal | None) -> str:
    """Dollars as every table shows them: to the micro-dollar, with thousands separators.

    One format everywhere, so amounts line up and compare at a glance; the ledger
    itself keeps exact pico-dollars. A non-zero amount below half a micro-dollar
    shows as ``<$0.000001`` rather than as zero.
    """
    if value is None:
        return "unknown"
    if value and abs(value) < _MICRO / 2:
        return ("-" if value < 0 else "") + "<$0.000001"
    rounded = value.quantize(_MICRO, rounding=ROUND_HALF_EVEN)
    sign = "-" if rounded < 0 else ""
    return f"{sign}${abs(rounded):,.6f}"


def picos_usd(picos: int | None) -> str:
    """Pico-dollars from a ledger column, shown as :func:`usd` shows dollars."""
    return usd(None if picos is None else from_picos(picos))


def when(ts: float | None) -> str:
    """An epoch time as ``YYYY-MM-DD HH:MM:SS`` in UTC (the zone of the day and month budget limits)."""
    return "" if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def compact_table(title: str | None = None, *, show_header: bool = True) -> Table:
    """A table with a rule under its header and no other lines or edge padding, to fit narrow terminals."""
    return Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
        show_header=show_header,
    )


def task_cost(task: TaskRecord | TaskRow) -> str:
    """A task's cost for display; unknown when a call had no price."""
    return "unknown" if task.unpriced_calls else picos_usd(task.cost_picos)


def tasks_table(tasks: Sequence[TaskRecord | TaskRow], title: str = "Tasks", *, wide: bool = False) -> Table:
    """One row per task: id, when (UTC), agent, status and cost; ``wide`` adds tenant/tags, calls, tokens, baseline.

    The default fits 80 columns; the wide view needs about 140.
    """
    table = compact_table(title)
    table.add_column("task", no_wrap=True)
    table.add_column("when (UTC)", no_wrap=True)
    table.add_column("agent", overflow="fold")
    if wide:
        table.add_column("tenant / tags", overflow="fold")
    table.add_column("status", no_wrap=True)
    if wide:
        table.add_column("calls", justify="right", no_wrap=True)
        table.add_column("tokens", justify="right", no_wrap=True)
    table.add_column("cost", justify="right", no_wrap=True)
    if wide:
        table.add_column("baseline", justify="right", no_wrap=True)
    for t in tasks:
        status = Text(t.status, style=_STATUS_STYLE.get(t.status, ""))
        row: list[RenderableType] = [t.id, when(t.created_at)[5:16]]
        if wide:
            who = " ".join([t.tenant, *(f"{k}={v}" for k, v in sorted(t.tags.items()))])
            row += [f"{t.agent} v{t.agent_version}", who, status, str(t.calls), f"{t.input_tokens + t.output_tokens:,}",
                    task_cost(t), "unknown" if t.unpriced_calls else picos_usd(t.baseline_picos)]
        else:
            row += [t.agent, status, task_cost(t)]
        table.add_row(*row)
    return table


def _header(task: TaskRecord | TaskDetail) -> Table:
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold", no_wrap=True)
    head.add_column(overflow="fold")
    head.add_row("task", task.id)
    head.add_row("agent", f"{task.agent} v{task.agent_version}")
    head.add_row("tenant", task.tenant)
    head.add_row("tags", ", ".join(f"{k}={v}" for k, v in sorted(task.tags.items())) or "-")
    head.add_row("budget", ", ".join(f"{k}={v}" for k, v in task.budget.items()) or "no caps")
    if task.policy_version is not None:  # the config's policies it ran under (governance as code)
        head.add_row("policy", task.policy_version)
    head.add_row("status", Text(task.status, style=_STATUS_STYLE.get(task.status, "")))
    if task.stop_reason:
        head.add_row("stop reason", Text(task.stop_reason))
    head.add_row("success", {True: "yes", False: "no", None: "unknown"}[task.success])
    head.add_row("cost", task_cost(task))
    head.add_row("baseline", f"{picos_usd(task.baseline_picos)} (the same tokens on the deepest tier)")
    head.add_row("started", f"{when(task.created_at)} UTC")
    head.add_row("finished", f"{when(task.finished_at)} UTC" if task.finished_at else "-")
    return head


def _plan(plan: dict[str, object]) -> list[RenderableType]:
    if "invalid" in plan:
        # The planner's reply did not make a valid plan even after one repair: show what it said.
        return [
            Text("Plan: invalid", style="bold red"),
            Text(f"why: {plan['invalid']}"),
            Text("the planner's raw reply:", style="bold"),
            Text(str(plan.get("raw") or "(empty)")),
        ]
    table = compact_table("Plan")
    table.add_column("subtask", overflow="fold")
    table.add_column("complexity", no_wrap=True)
    table.add_column("after", overflow="fold")
    table.add_column("tier", no_wrap=True)
    table.add_column("why", overflow="fold")
    subtasks = plan.get("subtasks", [])
    for s in subtasks if isinstance(subtasks, list) else []:
        table.add_row(s["id"], s["complexity"], ", ".join(s.get("depends_on", [])) or "-", s["tier"], s["reason"])
    return [table]


def _calls(steps: Sequence[StepRecord | StepRow], wide: bool) -> tuple[Table, list[Text]]:
    table = compact_table("Calls")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("subtask", overflow="fold")
    table.add_column("tier / model" if wide else "tier", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("in / out / cached" if wide else "in / out", justify="right", no_wrap=True)
    table.add_column("cost", justify="right", no_wrap=True)
    table.add_column("reserved", justify="right", no_wrap=True)
    if wide:
        table.add_column("ms", justify="right", no_wrap=True)
        table.add_column("try", justify="right", no_wrap=True)
    notes: list[Text] = []
    for i, s in enumerate(steps, 1):
        status = Text(s.status, style={"ok": "green", "refused": "yellow"}.get(s.status, "red"))
        tokens = f"{s.input_tokens:,} / {s.output_tokens:,}"
        row: list[RenderableType] = [str(i), s.kind, s.subtask_id or ""]
        if wide:
            row += [f"{s.tier or '-'} {s.provider or ''}/{s.model or ''}", status,
                    f"{tokens} / {s.cache_read_tokens:,}", picos_usd(s.cost_picos), picos_usd(s.reserved_picos),
                    f"{s.latency_ms:.0f}", str(s.attempt)]
        else:
            row += [s.tier or "-", status, tokens, picos_usd(s.cost_picos), picos_usd(s.reserved_picos)]
        table.add_row(*row)
        if s.error:
            notes.append(Text(f"#{i} {s.error}", style="red"))
        elif s.note and s.kind != "execute":
            notes.append(Text(f"#{i} {s.note}"))
    return table, notes


def _split(steps: Sequence[StepRecord | StepRow]) -> Table | None:
    split = tier_split(steps)
    if not split:
        return None
    tools = [s for s in steps if s.kind == "tool" and s.status != "refused"]
    table = compact_table("Cost by tier (tool calls on their own line)")
    for col in ("tier", "model", "calls", "tokens", "cost", "share"):
        table.add_column(col, justify="left" if col in ("tier", "model") else "right",
                         overflow="fold", no_wrap=col != "model")
    tool_picos = sum(s.cost_picos or 0 for s in tools)
    total = sum(c for _, _, c in split.values()) + tool_picos
    for tier, (n, tokens, spent) in split.items():
        # The model that served each call (a tier may have been served by more than one).
        models = ", ".join(sorted({s.model or "?" for s in steps if s.tier == tier and s.kind != "tool"}))
        table.add_row(tier, models, str(n), f"{tokens:,}", picos_usd(spent), f"{100 * spent / (total or 1):.0f}%")
    if tools:
        share = f"{100 * tool_picos / (total or 1):.0f}%"
        table.add_row("(tools)", "-", str(len(tools)), "-", picos_usd(tool_picos), share)
    return table


def task_detail(
    task: TaskRecord | TaskDetail, steps: Sequence[StepRecord | StepRow], *, wide: bool = False
) -> Group:
    """A task's header, its plan (or the invalid reply), every call, and its cost by tier and tools."""
    parts: list[RenderableType] = [_header(task)]
    if task.plan:
        parts += _plan(task.plan)
    calls, notes = _calls(steps, wide)
    parts.append(calls)
    parts.extend(notes)
    split = _split(steps)
    if split is not None:
        parts.append(split)
    return Group(*parts)


def tier_split(steps: Sequence[StepRecord | StepRow]) -> dict[str, tuple[int, int, int]]:
    """Per tier: model calls made, tokens and pico-dollars spent (refused calls and tool calls excluded)."""
    split: dict[str, tuple[int, int, int]] = {}
    for s in steps:
        if s.tier is None or s.status == "refused" or s.kind == "tool":
            continue
        n, tokens, cost = split.get(s.tier, (0, 0, 0))
        split[s.tier] = (n + 1, tokens + s.input_tokens + s.output_tokens, cost + (s.cost_picos or 0))
    return split
