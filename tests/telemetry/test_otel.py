"""OpenTelemetry export: every span says what the ledger row says (same tokens, same cost), metrics add up to it."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from paymaster import Agent, Budget, MissingExtraError, ModelResponse, Runtime, ScriptedProvider, TaskStatus, tool
from paymaster._money import from_picos
from paymaster.ledger import StepRecord
from paymaster.providers import ToolCall, Usage
from paymaster.telemetry import OpenTelemetry

PLAN = {
    "subtasks": [
        {"id": "facts", "goal": "List the facts.", "complexity": "simple", "depends_on": [], "expected_output": ""},
        {"id": "brief", "goal": "Write the brief.", "complexity": "complex", "depends_on": ["facts"],
         "expected_output": ""},
    ]
}
CACHED = Usage(input_tokens=1_200, output_tokens=150, cache_read_tokens=400, cache_write_tokens=100)


@tool(price_usd="0.01")
def lookup_order(order_id: int) -> dict[str, object]:
    """Look up an order by id."""
    return {"order_id": order_id, "status": "delivered"}


class Planned(Agent):
    name = "planned"
    planner = "llm"


class Clerk(Agent):
    name = "clerk"
    tools = [lookup_order]  # noqa: RUF012


class Answerer(Agent):
    name = "answerer"  # no tools: its calls can be served from the cache


@dataclass
class Collected:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    observer: OpenTelemetry

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def sums(self, name: str) -> dict[tuple[tuple[str, Any], ...], int]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        found: dict[tuple[tuple[str, Any], ...], int] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in (m for m in scope.metrics if m.name == name):
                    for point in metric.data.data_points:  # type: ignore[union-attr]
                        found[tuple(sorted((point.attributes or {}).items()))] = int(point.value)  # type: ignore[union-attr]
        return found


@pytest.fixture
def otel() -> Iterator[Collected]:
    spans = InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    yield Collected(spans, reader, OpenTelemetry(tracer_provider=tracers, meter_provider=meters))
    tracers.shutdown()
    meters.shutdown()


def _clerk_provider() -> ScriptedProvider:
    asks = [
        ModelResponse(text="", usage=CACHED, model="claude-haiku-4-5",
                      tool_calls=(ToolCall(id=f"c{i}", name="lookup_order", arguments={"order_id": i}),))
        for i in range(2)
    ]
    return ScriptedProvider([*asks, "done"], usage=CACHED)


def _step_span_attributes_match(span: ReadableSpan, row: StepRecord) -> None:
    attrs = dict(span.attributes or {})
    assert attrs["paymaster.step.kind"] == row.kind and attrs["paymaster.step.status"] == row.status
    assert attrs["gen_ai.operation.name"] == ("execute_tool" if row.kind == "tool" else "chat")
    assert attrs["gen_ai.provider.name"] == row.provider
    assert attrs["gen_ai.usage.input_tokens"] == row.input_tokens
    assert attrs["gen_ai.usage.output_tokens"] == row.output_tokens
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == row.cache_read_tokens
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == row.cache_write_tokens
    assert attrs["paymaster.budget.held_picos"] == row.reserved_picos
    assert row.cost_picos is not None
    assert attrs["paymaster.cost_picos"] == row.cost_picos
    assert attrs["gen_ai.usage.cost.amount"] == float(from_picos(row.cost_picos))
    assert attrs["gen_ai.usage.cost.currency"] == "USD"
    assert attrs.get("paymaster.baseline_picos") == row.baseline_picos
    if row.kind == "tool":
        assert attrs["gen_ai.tool.name"] == row.model
    else:
        assert attrs["gen_ai.request.model"] == row.model and attrs["paymaster.tier"] == row.tier
        assert attrs["gen_ai.response.model"] == row.model
        assert attrs.get("paymaster.request_id") == row.request_id
    if row.status == "refused":
        assert attrs["paymaster.budget.refused_by"] == row.error
    assert span.start_time == int(row.created_at * 1e9)
    assert span.end_time == span.start_time + int(row.latency_ms * 1e6)


def test_every_step_span_carries_its_ledger_rows_tokens_and_cost(ledger_path: Path, otel: Collected) -> None:
    with Runtime(ledger=ledger_path, provider=ScriptedProvider([json.dumps(PLAN)], usage=CACHED),
                 observers=[otel.observer]) as rt:
        planned = rt.run_sync(Planned, "Assess the vendor contract.", tenant="acme", tags={"team": "legal"},
                              budget=Budget(usd="1"))
    with Runtime(ledger=ledger_path, provider=_clerk_provider(), observers=[otel.observer]) as rt:
        clerk = rt.run_sync(Clerk, "Where are orders 0 and 1?", tenant="globex", budget=Budget(tool_calls=1))
        ledger_rows = {o.task_id: rt.ledger.steps(o.task_id) for o in (planned, clerk)}
        tasks = {o.task_id: rt.ledger.task(o.task_id) for o in (planned, clerk)}
    assert planned.status is TaskStatus.SUCCEEDED and clerk.status is TaskStatus.BUDGET_EXCEEDED

    spans = otel.finished()
    task_spans = {s.attributes["paymaster.task.id"]: s for s in spans if s.name.startswith("invoke_agent ")}  # type: ignore[index]
    assert set(task_spans) == {planned.task_id, clerk.task_id}
    kinds_seen: set[tuple[str, str]] = set()
    for task_id, rows in ledger_rows.items():
        parent = task_spans[task_id]
        children = [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]
        assert len(children) == len(rows) and rows
        rows = sorted(rows, key=lambda r: (r.created_at, r.id or 0))
        children.sort(key=lambda s: (s.start_time or 0))
        for span, row in zip(children, rows, strict=True):
            assert span.context.trace_id == parent.context.trace_id
            _step_span_attributes_match(span, row)
            kinds_seen.add((row.kind, row.status))
        task = tasks[task_id]
        assert task is not None
        attrs = dict(parent.attributes or {})
        assert attrs["gen_ai.agent.name"] == task.agent and attrs["paymaster.tenant"] == task.tenant
        assert attrs["paymaster.cost_picos"] == task.cost_picos == sum(r.cost_picos or 0 for r in rows)
        assert attrs["paymaster.baseline_picos"] == task.baseline_picos
        assert attrs["paymaster.task.status"] == task.status
        assert attrs.get("paymaster.task.stop_reason") == task.stop_reason
        assert attrs["gen_ai.usage.input_tokens"] == task.input_tokens
        assert attrs["gen_ai.usage.output_tokens"] == task.output_tokens
        assert attrs["paymaster.calls"] == task.calls
    # The runs covered a plan, model calls, paid tool calls and a tool call the budget refused.
    assert {("plan", "ok"), ("execute", "ok"), ("tool", "ok"), ("tool", "refused")} <= kinds_seen
    planned_attrs = dict(task_spans[planned.task_id].attributes or {})
    assert planned_attrs["paymaster.tag.team"] == "legal"
    assert planned_attrs["paymaster.budget.cap_picos"] == 10**12
    last = max((s for s in spans if s.parent is not None and s.parent.span_id
                == task_spans[planned.task_id].context.span_id), key=lambda s: s.start_time or 0)
    assert last.attributes["paymaster.budget.remaining_picos"] == 10**12 - tasks[planned.task_id].cost_picos  # type: ignore[index,union-attr]


def test_a_served_model_other_than_the_one_asked_for_shows_as_the_response_model(
    ledger_path: Path, otel: Collected
) -> None:
    provider = ScriptedProvider(serves={"claude-haiku-4-5": "claude-haiku-4-5-20251001"})
    with Runtime(ledger=ledger_path, provider=provider, observers=[otel.observer]) as rt:
        outcome = rt.run_sync(Clerk, "Hello.")
        (row,) = rt.ledger.steps(outcome.task_id)
    (step,) = [s for s in otel.finished() if s.parent is not None]
    assert step.attributes is not None
    assert step.attributes["gen_ai.request.model"] == "claude-haiku-4-5"
    assert step.attributes["gen_ai.response.model"] == row.model == "claude-haiku-4-5-20251001"
    assert step.name == "chat claude-haiku-4-5-20251001"


def test_a_failed_call_is_an_error_span_and_its_worst_case_charge_is_on_it(ledger_path: Path, otel: Collected) -> None:
    from paymaster.errors import ProviderTimeoutError
    from paymaster.executors import RetryPolicy

    provider = ScriptedProvider([ProviderTimeoutError("timed out after 30s", provider="scripted")])
    with Runtime(ledger=ledger_path, provider=provider, observers=[otel.observer],
                 retry=RetryPolicy(max_attempts=1)) as rt:
        outcome = rt.run_sync(Clerk, "Hello.")
        (row,) = rt.ledger.steps(outcome.task_id)
    (step,) = [s for s in otel.finished() if s.parent is not None]
    assert row.status == "unsettled" and row.cost_picos is not None and row.cost_picos > 0
    assert step.status.status_code.name == "ERROR"
    assert step.attributes is not None
    assert step.attributes["error.type"] == "ProviderTimeoutError"
    assert step.attributes["paymaster.cost_picos"] == row.cost_picos
    assert "gen_ai.response.model" not in step.attributes  # nothing answered


def test_metrics_add_up_to_the_ledger_by_agent_tenant_tier_and_model(ledger_path: Path, otel: Collected) -> None:
    with Runtime(ledger=ledger_path, provider=_clerk_provider(), observers=[otel.observer]) as rt:
        clerk = rt.run_sync(Clerk, "Where are orders 0 and 1?", tenant="globex")
        other = rt.run_sync(Planned, "Short.", tenant="acme")  # the planner's reply is no plan: plan_invalid
        rows = rt.ledger.steps(clerk.task_id) + rt.ledger.steps(other.task_id)
        tasks = [rt.ledger.task(clerk.task_id), rt.ledger.task(other.task_id)]
    agent_of = {clerk.task_id: ("clerk", "globex"), other.task_id: ("planned", "acme")}
    want_cost: dict[tuple[tuple[str, Any], ...], int] = {}
    want_input: dict[tuple[tuple[str, Any], ...], int] = {}
    for row in rows:
        agent, tenant = agent_of[row.task_id]
        key = tuple(sorted({"gen_ai.agent.name": agent, "paymaster.tenant": tenant,
                            "paymaster.tier": row.tier or "", "gen_ai.response.model": row.model or ""}.items()))
        if row.cost_picos:
            want_cost[key] = want_cost.get(key, 0) + row.cost_picos
        if row.input_tokens:
            input_key = tuple(sorted((*key, ("gen_ai.token.type", "input"))))
            want_input[input_key] = want_input.get(input_key, 0) + row.input_tokens
    assert otel.sums("paymaster.cost") == want_cost
    tokens = otel.sums("paymaster.tokens")
    assert {k: v for k, v in tokens.items() if ("gen_ai.token.type", "input") in k} == want_input
    assert sum(v for k, v in tokens.items() if ("gen_ai.token.type", "output") in k) == sum(
        t.output_tokens for t in tasks if t is not None
    )
    assert sum(otel.sums("paymaster.calls").values()) == sum(t.calls for t in tasks if t is not None)
    assert sum(want_cost.values()) == sum(t.cost_picos for t in tasks if t is not None) > 0


def test_without_the_extra_constructing_it_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(MissingExtraError, match=r"paymaster\[otel\]"):
        OpenTelemetry()


def test_importing_paymaster_and_its_telemetry_never_loads_opentelemetry() -> None:
    code = "import sys, paymaster, paymaster.telemetry\nprint(any(m.startswith('opentelemetry') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"



class _Collector(BaseHTTPRequestHandler):
    """A loopback OTLP/HTTP receiver: keeps each POST /v1/traces body it is sent."""

    bodies: list[tuple[str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.bodies.append((self.path, self.headers.get("Content-Type", ""), body))  # type: ignore[attr-defined]
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet


def test_spans_reach_an_otlp_http_collector_as_protobuf(ledger_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    server.bodies = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        tracers = TracerProvider()
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
        tracers.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        observer = OpenTelemetry(tracer_provider=tracers, meter_provider=MeterProvider())
        with Runtime(ledger=ledger_path, provider=ScriptedProvider(usage=CACHED), observers=[observer]) as rt:
            outcome = rt.run_sync(Clerk, "Hello.", tenant="acme")
            (row,) = rt.ledger.steps(outcome.task_id)
        assert tracers.force_flush()
        tracers.shutdown()
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    bodies = server.bodies  # type: ignore[attr-defined]
    assert bodies and all(path == "/v1/traces" and kind == "application/x-protobuf" for path, kind, _ in bodies)
    sent: dict[str, dict[str, Any]] = {}
    for _, _, body in bodies:
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    sent[span.name] = {a.key: a.value for a in span.attributes}
    step = sent["chat claude-haiku-4-5"]
    assert step["gen_ai.usage.input_tokens"].int_value == row.input_tokens == CACHED.input_tokens
    assert step["gen_ai.usage.cache_read.input_tokens"].int_value == CACHED.cache_read_tokens
    assert step["paymaster.cost_picos"].int_value == row.cost_picos
    assert step["gen_ai.usage.cost.amount"].double_value == float(from_picos(row.cost_picos or 0))
    assert sent["invoke_agent clerk"]["paymaster.tenant"].string_value == "acme"


def test_a_cache_hit_is_a_free_chat_span_that_carries_what_it_saved(ledger_path: Path, otel: Collected) -> None:
    pytest.importorskip("faiss")
    from paymaster.cache import SemanticCache
    from tests.cache.helpers import WordEmbedder

    with SemanticCache(ledger_path.parent / "cache.db", embedder=WordEmbedder()) as cache, Runtime(
        ledger=ledger_path, provider=ScriptedProvider(usage=CACHED), cache=cache, observers=[otel.observer]
    ) as rt:
        rt.run_sync(Answerer, "What is the refund window for annual plans?")
        again = rt.run_sync(Answerer, "What is the refund window for annual plans?")
        (row,) = rt.ledger.steps(again.task_id)
    assert row.kind == "cache_hit" and row.saved_picos
    (span,) = [s for s in otel.finished() if (s.attributes or {}).get("paymaster.step.kind") == "cache_hit"]
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["gen_ai.provider.name"] == "cache"
    assert attrs["paymaster.cost_picos"] == 0 and attrs["gen_ai.usage.cost.amount"] == 0.0
    assert attrs["paymaster.saved_picos"] == row.saved_picos
    assert span.kind.name == "INTERNAL"
    assert sum(otel.sums("paymaster.calls").values()) == 1  # the hit is no call
