"""Rich renderings of ledger rows."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from .._money import fmt_usd, from_picos
from ..ledger import StepRecord, TaskRecord

_STATUS_STYLE = {"succeeded": "green", "budget_exceeded": "yellow", "failed": "red", "running": "cyan"}


def make_console() -> Console:
    """A Rich console; piped output gets a wide page so each ledger row stays on one line."""
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 160
    return console


def _when(ts: float | None) -> str:
    return "" if ts is None else dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def task_cost(task: TaskRecord) -> str:
    """A task's cost for display; unknown when a call had no price."""
    return "unknown" if task.unpriced_calls else fmt_usd(from_picos(task.cost_picos))


def tasks_table(tasks: Sequence[TaskRecord], title: str = "Tasks") -> Table:
    """One row per task: who, how it ended, calls, tokens, cost and baseline."""
    table = Table(title=title, title_justify="left")
    table.add_column("task", no_wrap=True)
    table.add_column("when", no_wrap=True)
    table.add_column("agent")
    table.add_column("tenant / tags")
    table.add_column("status")
    table.add_column("calls", justify="right")
    table.add_column("tokens", justify="right")
    table.add_column("cost", justify="right", no_wrap=True)
    table.add_column("baseline", justify="right", no_wrap=True)
    for t in tasks:
        who = " ".join([t.tenant, *(f"{k}={v}" for k, v in sorted(t.tags.items()))])
        table.add_row(
            t.id, _when(t.created_at)[5:16], f"{t.agent} v{t.agent_version}", who,
            Text(t.status, style=_STATUS_STYLE.get(t.status, "")), str(t.calls),
            f"{t.input_tokens + t.output_tokens:,}", task_cost(t),
            "unknown" if t.unpriced_calls else fmt_usd(from_picos(t.baseline_picos)),
        )
    return table


def task_detail(task: TaskRecord, steps: Sequence[StepRecord]) -> Group:
    """A task's header, its plan with the tier of each subtask and why, and every call it made."""
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("task", task.id)
    head.add_row("agent", f"{task.agent} v{task.agent_version}")
    head.add_row("tenant", task.tenant)
    head.add_row("tags", ", ".join(f"{k}={v}" for k, v in sorted(task.tags.items())) or "-")
    head.add_row("budget", ", ".join(f"{k}={v}" for k, v in task.budget.items()) or "no caps")
    head.add_row("status", Text(task.status, style=_STATUS_STYLE.get(task.status, "")))
    if task.stop_reason:
        head.add_row("stop reason", task.stop_reason)
    head.add_row("success", {True: "yes", False: "no", None: "unknown"}[task.success])
    head.add_row("cost", task_cost(task))
    head.add_row("baseline", f"{fmt_usd(from_picos(task.baseline_picos))} (same tokens on the deepest tier)")
    head.add_row("started", _when(task.created_at))
    head.add_row("finished", _when(task.finished_at))
    parts: list[Table | Text] = [head]
    if task.plan:
        plan = Table(title="Plan", title_justify="left")
        for col in ("subtask", "complexity", "depends on", "tier", "why"):
            plan.add_column(col)
        for s in task.plan.get("subtasks", []):
            plan.add_row(s["id"], s["complexity"], ",".join(s.get("depends_on", [])) or "-", s["tier"], s["reason"])
        parts.append(plan)
    calls = Table(title="Calls", title_justify="left")
    calls.add_column("#", justify="right")
    calls.add_column("kind")
    calls.add_column("subtask")
    calls.add_column("tier / model")
    calls.add_column("status")
    calls.add_column("in / out / cached", justify="right")
    calls.add_column("cost", justify="right", no_wrap=True)
    calls.add_column("reserved", justify="right", no_wrap=True)
    calls.add_column("ms", justify="right")
    calls.add_column("try", justify="right")
    notes: list[Text] = []
    for i, s in enumerate(steps, 1):
        cost = "unknown" if s.cost_picos is None else fmt_usd(from_picos(s.cost_picos))
        calls.add_row(
            str(i), s.kind, s.subtask_id or "", f"{s.tier or '-'} {s.provider or ''}/{s.model or ''}",
            Text(s.status, style={"ok": "green", "refused": "yellow"}.get(s.status, "red")),
            f"{s.input_tokens:,} / {s.output_tokens:,} / {s.cache_read_tokens:,}", cost,
            fmt_usd(from_picos(s.reserved_picos)), f"{s.latency_ms:.0f}", str(s.attempt),
        )
        if s.error:
            notes.append(Text(f"#{i} {s.error}", style="red"))
        elif s.note and s.kind != "execute":
            notes.append(Text(f"#{i} {s.note}"))
    parts.append(calls)
    parts.extend(notes)
    split = tier_split(steps)
    if split:
        summary = Table(title="Tier split", title_justify="left")
        for col, justify in [("tier", "left"), ("calls", "right"), ("tokens", "right"), ("cost", "right"),
                             ("share of cost", "right")]:
            summary.add_column(col, justify=justify)  # type: ignore[arg-type]
        total = sum(c for _, _, c in split.values()) or 1
        for tier, (n, tokens, spent) in split.items():
            summary.add_row(tier, str(n), f"{tokens:,}", fmt_usd(from_picos(spent)), f"{100 * spent / total:.0f}%")
        parts.append(summary)
    return Group(*parts)


def tier_split(steps: Sequence[StepRecord]) -> dict[str, tuple[int, int, int]]:
    """Per tier: model calls made, tokens and pico-dollars spent (refused calls excluded)."""
    split: dict[str, tuple[int, int, int]] = {}
    for s in steps:
        if s.tier is None or s.status == "refused":
            continue
        n, tokens, cost = split.get(s.tier, (0, 0, 0))
        split[s.tier] = (n + 1, tokens + s.input_tokens + s.output_tokens, cost + (s.cost_picos or 0))
    return split
