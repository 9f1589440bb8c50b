"""Live anomalies: caught while the task runs, from history read off the event loop at most every N seconds."""

from __future__ import annotations

import json
import time

import pytest

from paymaster import (
    Agent,
    ConfigurationError,
    Ledger,
    LiveAnomalies,
    LiveAnomaly,
    ModelResponse,
    Runtime,
    ScriptedProvider,
    TaskStatus,
    tool,
)
from paymaster.providers import ModelRequest, ToolCall, Usage
from paymaster.telemetry import _anomalies
from tests.finops_helpers import add_task

FIXED = Usage(input_tokens=1_000, output_tokens=200)  # on claude-haiku-4-5: $0.002 a call
DAY = 86_400


@tool
def lookup_order(order_id: int) -> dict[str, object]:
    """Look up an order by id."""
    return {"order_id": order_id, "status": "delivered"}


class Clerk(Agent):
    name = "clerk"
    tools = [lookup_order]  # noqa: RUF012


def _asks_for_tools(times: int, usage: Usage = FIXED) -> ScriptedProvider:
    asks = [
        ModelResponse(text="", usage=usage, model="claude-haiku-4-5",
                      tool_calls=(ToolCall(id=f"c{i}", name="lookup_order", arguments={"order_id": i}),))
        for i in range(times)
    ]
    return ScriptedProvider([*asks, "done"], usage=usage)


def _usual_tasks(ledger: Ledger, agent: str = "clerk", tenant: str = "acme", n: int = 5) -> None:
    """Five finished tasks of ``agent`` an hour ago, each costing $0.0005: the median is $0.0005."""
    for i in range(n):
        add_task(ledger, f"{agent}-{tenant}-usual-{i}", agent, "0.0005", tenant=tenant, at=time.time() - 3600)


def test_a_task_past_three_times_its_agents_median_fires_while_it_runs(ledger: Ledger) -> None:
    _usual_tasks(ledger)
    provider = _asks_for_tools(2)
    seen: list[tuple[LiveAnomaly, int]] = []
    watch = LiveAnomalies(ledger, listener=lambda a: seen.append((a, len(provider.calls))))
    watch.refresh()
    with Runtime(ledger=ledger, provider=provider, observers=[watch]) as rt:
        outcome = rt.run_sync(Clerk, "Where are orders 0 and 1?", tenant="acme")
    watch.close()
    assert outcome.status is TaskStatus.SUCCEEDED  # "alert" only tells
    (anomaly, calls_so_far), = [(a, n) for a, n in seen if a.kind == "task_cost"]
    # $0.002 after the first call (of three) is over 3 x $0.0005: it fired then, while the task ran.
    assert calls_so_far == 1 and len(provider.calls) == 3
    assert (anomaly.agent, anomaly.tenant, anomaly.task_id) == ("clerk", "acme", outcome.task_id)
    assert str(anomaly.threshold) == "0.0015" and anomaly.value > anomaly.threshold
    assert watch.events == [a for a, _ in seen]


def test_on_anomaly_halt_stops_the_task_and_says_why(ledger: Ledger) -> None:
    _usual_tasks(ledger)
    provider = _asks_for_tools(5)
    watch = LiveAnomalies(ledger, on_anomaly="halt")
    watch.refresh()
    with Runtime(ledger=ledger, provider=provider, observers=[watch]) as rt:
        outcome = rt.run_sync(Clerk, "Where are my orders?", tenant="acme")
        task = rt.ledger.task(outcome.task_id)
    watch.close()
    assert outcome.status is TaskStatus.HALTED and len(provider.calls) == 1
    assert outcome.stop_reason is not None and outcome.stop_reason.startswith("anomaly: task ")
    assert "over 3x the median $0.0005 of agent 'clerk'" in outcome.stop_reason
    assert task is not None and (task.status, task.stop_reason) == ("halted", outcome.stop_reason)
    assert outcome.cost_usd is not None and outcome.cost_usd > 0  # the call that tripped it is charged


def test_no_judgement_from_fewer_than_five_tasks_or_within_three_times_the_median(ledger: Ledger) -> None:
    _usual_tasks(ledger, n=4)
    add_task(ledger, "big-peer", "other", "0.001", at=time.time() - 3600)
    watch = LiveAnomalies(ledger, on_anomaly="halt")
    watch.refresh()
    with Runtime(ledger=ledger, provider=_asks_for_tools(1), observers=[watch]) as rt:
        outcome = rt.run_sync(Clerk, "Where is order 0?", tenant="acme")
    watch.close()
    assert outcome.status is TaskStatus.SUCCEEDED and watch.events == []


def test_a_days_spend_past_mean_plus_two_sigma_fires_once_per_agent_and_tenant(ledger: Ledger) -> None:
    now = time.time()
    for back in range(1, 11):  # ten quiet days of $0.001 to $0.002 for acme and for globex
        for tenant in ("acme", "globex"):
            add_task(ledger, f"{tenant}-day-{back}", "clerk", "0.001" if back % 2 else "0.002", tenant=tenant,
                     at=now - back * DAY)
    watch = LiveAnomalies(ledger)
    watch.refresh()
    with Runtime(ledger=ledger, provider=ScriptedProvider(usage=FIXED), observers=[watch]) as rt:
        first = rt.run_sync(Clerk, "One.", tenant="acme")  # $0.002: within mean + 2 sigma ($0.0025)
        assert [a for a in watch.events if a.kind == "day_spend"] == []
        rt.run_sync(Clerk, "Two.", tenant="acme")  # $0.004 today: over it
        rt.run_sync(Clerk, "Three.", tenant="acme")  # still over: no second event
        rt.run_sync(Clerk, "Four.", tenant="globex")  # globex's own day is still normal
    watch.close()
    (day,) = [a for a in watch.events if a.kind == "day_spend"]
    assert (day.agent, day.tenant) == ("clerk", "acme") and day.task_id != first.task_id
    assert str(day.threshold) == "0.0025" and str(day.value) == "0.004"
    assert "over the mean + 2 sigma ($0.0025) of the 30 days before" in day.message


def test_a_loop_of_calls_whose_replies_stop_growing_is_flagged_and_can_be_halted(ledger: Ledger) -> None:
    provider = _asks_for_tools(10)  # the same short reply, asking for the same tool, again and again
    watch = LiveAnomalies(ledger, on_anomaly="halt", runaway_steps=4)
    with Runtime(ledger=ledger, provider=provider, observers=[watch]) as rt:
        outcome = rt.run_sync(Clerk, "Where are my orders?")
    watch.close()
    assert outcome.status is TaskStatus.HALTED and len(provider.calls) == 5  # the first, then 4 without growth
    assert outcome.stop_reason is not None and "runaway loop" in outcome.stop_reason
    assert [a.kind for a in watch.events] == ["runaway"]


def test_a_tool_loop_whose_replies_keep_growing_is_not_a_runaway(ledger: Ledger) -> None:
    def growing(request: ModelRequest) -> ModelResponse:
        turn = sum(1 for m in request.messages if m.role == "tool")
        calls = () if turn >= 6 else (ToolCall(id=f"c{turn}", name="lookup_order", arguments={"order_id": turn}),)
        return ModelResponse(text="", usage=Usage(input_tokens=100, output_tokens=10 * (turn + 1)),
                             model="claude-haiku-4-5", tool_calls=calls)

    watch = LiveAnomalies(ledger, on_anomaly="halt", runaway_steps=3)
    with Runtime(ledger=ledger, provider=ScriptedProvider(growing), observers=[watch]) as rt:
        outcome = rt.run_sync(Clerk, "Where are my orders?")
    watch.close()
    assert outcome.status is TaskStatus.SUCCEEDED and watch.events == []


def test_history_is_read_at_most_every_refresh_seconds_never_per_step(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[float] = []
    real = _anomalies.read_history

    def counted(*args: object) -> object:
        reads.append(time.time())
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(_anomalies, "read_history", counted)
    now = [1_000_000.0]
    watch = LiveAnomalies(ledger, refresh_seconds=600, clock=lambda: now[0])
    with Runtime(ledger=ledger, provider=_asks_for_tools(30), observers=[watch]) as rt:
        for _ in range(3):
            rt.run_sync(Clerk, "Where are my orders?")  # 11 calls and 10 tool calls each
        watch._pending.result()  # type: ignore[union-attr]
        assert len(reads) == 1
        now[0] += 601
        rt.run_sync(Clerk, "Again.")
        watch._pending.result()  # type: ignore[union-attr]
    watch.close()
    assert len(reads) == 2


def test_bad_settings_are_configuration_errors(ledger: Ledger) -> None:
    with pytest.raises(ConfigurationError, match="on_anomaly is 'alert' or 'halt'"):
        LiveAnomalies(ledger, on_anomaly="stop")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="runaway_steps >= 2"):
        LiveAnomalies(ledger, runaway_steps=1)


def test_a_halt_among_subtasks_running_at_once_ends_the_task_halted(ledger: Ledger) -> None:
    class Planned(Agent):
        name = "planned"
        planner = "llm"

    plan = {"subtasks": [
        {"id": "facts", "goal": "List the facts.", "complexity": "simple", "depends_on": [], "expected_output": ""},
        {"id": "risks", "goal": "List the risks.", "complexity": "moderate", "depends_on": [], "expected_output": ""},
        {"id": "brief", "goal": "Write the brief.", "complexity": "complex", "depends_on": ["facts", "risks"],
         "expected_output": ""},
    ]}
    # A median of $0.0025 (limit $0.0075): the plan call ($0.006) fits, the plan and both subtasks do not.
    _usual_tasks(ledger, agent="planned")
    for i in range(5):
        add_task(ledger, f"planned-more-{i}", "planned", "0.0045", at=time.time() - 3600)
    watch = LiveAnomalies(ledger, on_anomaly="halt")
    watch.refresh()
    provider = ScriptedProvider([json.dumps(plan)], usage=FIXED)
    with Runtime(ledger=ledger, provider=provider, observers=[watch]) as rt:
        outcome = rt.run_sync(Planned, "Assess the vendor contract.")
        kinds = [s.kind for s in rt.ledger.steps(outcome.task_id)]
    watch.close()
    assert outcome.status is TaskStatus.HALTED
    assert outcome.stop_reason is not None and outcome.stop_reason.startswith("anomaly: task ")
    assert kinds[0] == "plan" and len(kinds) <= 3  # the brief never ran
