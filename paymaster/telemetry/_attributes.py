"""What a task or a step row says, as OpenTelemetry attributes (GenAI semantic conventions plus ``paymaster.*``).

Kept apart from the SDK calls so the mapping can be read, and tested, on its own.
Money: ``gen_ai.usage.cost.amount`` is a double in USD, the type the open
proposal for GenAI cost attributes gives it; the exact amount is always beside
it as integer pico-dollars (``paymaster.cost_picos``; 1 USD = 10**12).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from .._money import from_picos, plain_usd, to_picos

if TYPE_CHECKING:
    from ..executors import TaskView
    from ..ledger import Totals

AttributeValue = str | bool | int | float
Attributes = dict[str, AttributeValue]

# The step kinds that are model calls; the GenAI conventions call each one a chat.
_CHAT_KINDS = frozenset({"execute", "retry", "plan", "summarise", "aggregate", "eval", "cache_hit"})


def operation_name(kind: str) -> str:
    """The ``gen_ai.operation.name`` of a step kind: ``execute_tool`` for tools, ``chat`` for model calls."""
    if kind == "tool":
        return "execute_tool"
    return "chat" if kind in _CHAT_KINDS else kind


def error_type(error: str) -> str:
    """The error's class name from a row's ``error`` ("TimeoutError: ...", a tool's "error: ValueError: ...")."""
    parts = [part.strip() for part in error.split(":")]
    return parts[1] if parts[0] == "error" and len(parts) > 2 else parts[0]


def cap_picos(task: TaskView) -> int | None:
    """The task's own USD cap in pico-dollars, when it has one."""
    usd = task.budget.get("usd")
    if usd is None:
        return None
    try:
        return to_picos(Decimal(str(usd)))
    except InvalidOperation:
        return None


def task_attributes(task: TaskView) -> Attributes:
    """Attributes known when a task starts: who runs it, for whom, with which tags and cap."""
    attrs: Attributes = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": task.agent,
        "paymaster.agent.version": task.agent_version,
        "paymaster.task.id": task.task_id,
        "paymaster.tenant": task.tenant,
    }
    if task.parent_id is not None:
        attrs["paymaster.task.parent_id"] = task.parent_id
    for key, value in task.tags.items():
        attrs[f"paymaster.tag.{key}"] = value
    cap = cap_picos(task)
    if cap is not None:
        attrs["paymaster.budget.cap_picos"] = cap
    return attrs


def outcome_attributes(status: str, stop_reason: str | None, totals: Totals) -> Attributes:
    """Attributes known when a task ends: how it ended and what it cost (the ledger's task totals)."""
    attrs: Attributes = {
        "paymaster.task.status": status,
        "paymaster.cost_picos": totals.cost_picos,
        "paymaster.baseline_picos": totals.baseline_picos,
        "paymaster.cost_usd": plain_usd(from_picos(totals.cost_picos)),
        "paymaster.baseline_usd": plain_usd(from_picos(totals.baseline_picos)),
        "paymaster.calls": totals.calls,
        "paymaster.cache_hits": totals.cache_hits,
        "paymaster.unpriced_calls": totals.unpriced_calls,
        "gen_ai.usage.input_tokens": totals.input_tokens,
        "gen_ai.usage.output_tokens": totals.output_tokens,
    }
    if stop_reason is not None:
        attrs["paymaster.task.stop_reason"] = stop_reason
    return attrs


def step_attributes(task: TaskView, step: Mapping[str, Any], totals: Totals) -> Attributes:
    """One step row as span attributes: operation, provider, models, tokens, cost and the budget it ran under."""
    kind = str(step.get("kind", ""))
    status = str(step.get("status", "ok"))
    attrs: Attributes = {
        "gen_ai.operation.name": operation_name(kind),
        "paymaster.step.kind": kind,
        "paymaster.step.status": status,
        "gen_ai.usage.input_tokens": int(step.get("input_tokens") or 0),
        "gen_ai.usage.output_tokens": int(step.get("output_tokens") or 0),
        "gen_ai.usage.cache_read.input_tokens": int(step.get("cache_read_tokens") or 0),
        "gen_ai.usage.cache_creation.input_tokens": int(step.get("cache_write_tokens") or 0),
        "paymaster.budget.held_picos": int(step.get("reserved_picos") or 0),
    }
    provider, model = step.get("provider"), step.get("model")
    if provider is not None:
        attrs["gen_ai.provider.name"] = str(provider)
    if kind == "tool":
        if model is not None:
            attrs["gen_ai.tool.name"] = str(model)
    else:
        requested = step.get("request_model") or model
        if requested is not None:
            attrs["gen_ai.request.model"] = str(requested)
        # The served model is known from an answer (or from an error that named it).
        if model is not None and (status == "ok" or model != requested):
            attrs["gen_ai.response.model"] = str(model)
    for column, name in (("tier", "paymaster.tier"), ("subtask_id", "paymaster.subtask.id"),
                         ("request_id", "paymaster.request_id"), ("attempt", "paymaster.attempt"),
                         ("note", "paymaster.note")):
        value = step.get(column)
        if value is not None:
            attrs[name] = value if isinstance(value, int) else str(value)
    cost = step.get("cost_picos")
    if cost is not None:  # None: the price is unknown, which is not zero
        attrs["gen_ai.usage.cost.amount"] = float(from_picos(int(cost)))
        attrs["gen_ai.usage.cost.currency"] = "USD"
        attrs["gen_ai.usage.cost.source"] = "local"
        attrs["paymaster.cost_picos"] = int(cost)
    for column, name in (("baseline_picos", "paymaster.baseline_picos"), ("saved_picos", "paymaster.saved_picos")):
        value = step.get(column)
        if value is not None:
            attrs[name] = int(value)
    cap = cap_picos(task)
    if cap is not None:
        attrs["paymaster.budget.remaining_picos"] = cap - totals.cost_picos
    error = step.get("error")
    if error is not None:
        if status == "refused":
            attrs["paymaster.budget.refused_by"] = str(error)
        else:
            attrs["error.type"] = error_type(str(error))
    return attrs
