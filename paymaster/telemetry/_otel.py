"""The OpenTelemetry observer: a span per task, a child span per step, and cost, token and call counters.

Spans are built from the same step rows the ledger writes, so a trace and the
ledger agree to the token and to the pico-dollar. A step span runs from the
row's ``created_at`` for its ``latency_ms``, so the trace can be rebuilt from
the ledger alone with the same times.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import MissingExtraError
from ._attributes import outcome_attributes, step_attributes, task_attributes

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

    from ..executors import TaskView
    from ..ledger import Totals

_INSTALL_HINT = "pip install 'paymaster[otel]' (opentelemetry-api and opentelemetry-sdk)"
_NS = 1_000_000_000
# Counted as calls exactly as the ledger's task totals count them.
_CALL_STATUSES = ("ok", "error", "unsettled")
# Task endings that are failures; a task stopped at its cap or halted for review did what it promised.
_FAILED = frozenset({"failed", "plan_invalid", "model_rejected", "interrupted"})


class OpenTelemetry:
    """An observer that exports tasks and steps as OpenTelemetry spans and metrics.

    ``tracer_provider`` and ``meter_provider`` default to the global ones. Give
    the tracer provider a batching span processor in production: an exporter
    that sends on every span end would block the event loop.
    """

    def __init__(
        self, tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None
    ) -> None:
        try:
            from opentelemetry import metrics, trace
        except ImportError as exc:
            raise MissingExtraError(f"OpenTelemetry export needs the 'otel' extra: {_INSTALL_HINT}") from exc
        self._trace = trace
        tracers = tracer_provider or trace.get_tracer_provider()
        meters = meter_provider or metrics.get_meter_provider()
        self.tracer = tracers.get_tracer("paymaster", __version__)
        meter = meters.get_meter("paymaster", __version__)
        self.cost = meter.create_counter(
            "paymaster.cost", unit="{picodollar}", description="What steps cost, in pico-dollars (1 USD = 10^12)"
        )
        self.tokens = meter.create_counter(
            "paymaster.tokens", unit="{token}", description="Tokens used, by gen_ai.token.type (input or output)"
        )
        self.calls = meter.create_counter(
            "paymaster.calls", unit="{call}", description="Model calls made, as the ledger counts them"
        )
        self._spans: dict[str, Span] = {}

    def task_started(self, task: TaskView) -> None:
        """Open the task's span (a child of its parent task's span, for a sub-agent)."""
        parent = self._spans.get(task.parent_id) if task.parent_id is not None else None
        context = self._trace.set_span_in_context(parent) if parent is not None else None
        self._spans[task.task_id] = self.tracer.start_span(
            f"invoke_agent {task.agent}", context=context, kind=self._trace.SpanKind.INTERNAL,
            attributes=task_attributes(task), start_time=int(task.started_at * _NS) or None,
        )

    def step_recorded(self, task: TaskView, step: Mapping[str, Any], totals: Totals) -> None:
        """Add the step's span under its task's span, and count its cost, tokens and call."""
        attrs = step_attributes(task, step, totals)
        parent = self._spans.get(task.task_id)
        context = self._trace.set_span_in_context(parent) if parent is not None else None
        start = int(float(step.get("created_at") or 0) * _NS) or None
        name = f"{attrs['gen_ai.operation.name']} {step.get('model') or step.get('kind')}"
        local = step.get("kind") in ("tool", "cache_hit")  # no provider was called
        kind = self._trace.SpanKind.INTERNAL if local else self._trace.SpanKind.CLIENT
        span = self.tracer.start_span(name, context=context, kind=kind, attributes=attrs, start_time=start)
        status = step.get("status", "ok")
        if status in ("error", "unsettled"):
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, str(step.get("error") or status)))
        latency_ns = int(float(step.get("latency_ms") or 0) * 1_000_000)
        span.end(end_time=None if start is None else start + latency_ns)
        self._count(task, step)

    def task_finished(self, task: TaskView, status: str, stop_reason: str | None, totals: Totals) -> None:
        """Close the task's span with how it ended and what it cost."""
        span = self._spans.pop(task.task_id, None)
        if span is None:
            return
        span.set_attributes(outcome_attributes(status, stop_reason, totals))
        if status in _FAILED:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, stop_reason or status))
        span.end()

    def _count(self, task: TaskView, step: Mapping[str, Any]) -> None:
        labels: dict[str, str] = {
            "gen_ai.agent.name": task.agent, "paymaster.tenant": task.tenant,
            "paymaster.tier": str(step.get("tier") or ""), "gen_ai.response.model": str(step.get("model") or ""),
        }
        cost = step.get("cost_picos")
        if cost:
            self.cost.add(int(cost), labels)
        for column, token_type in (("input_tokens", "input"), ("output_tokens", "output")):
            tokens = int(step.get(column) or 0)
            if tokens:
                self.tokens.add(tokens, {**labels, "gen_ai.token.type": token_type})
        if step.get("status", "ok") in _CALL_STATUSES and step.get("kind") not in ("tool", "cache_hit"):
            self.calls.add(1, labels)
