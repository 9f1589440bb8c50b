"""Budgets that hold: nested accounts, retries, tools, time, depth, policies at the cap, kill switch, alerts."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from paymaster import (
    Agent,
    Alert,
    ApprovalRequest,
    Budget,
    Complexity,
    ConfigurationError,
    Limit,
    ModelRequest,
    ModelResponse,
    Outcome,
    Plan,
    RetryPolicy,
    Runtime,
    ScriptedProvider,
    Subtask,
    TaskStatus,
    Usage,
    tool,
)
from paymaster._money import from_picos, to_picos
from paymaster.errors import OverloadedError, RateLimitError
from paymaster.planners import PlanContext
from paymaster.providers import ToolCall

pytestmark = pytest.mark.ledgers  # every ledger_path test runs on SQLite and PostgreSQL

FAST = RetryPolicy(initial_wait=0, max_wait=0)
FIXED = Usage(input_tokens=1_000, output_tokens=200)  # on claude-haiku-4-5: $0.001 + $0.001 = $0.002


class Worker(Agent):
    name = "worker"


def test_tenant_day_limit_is_shared_by_every_task_and_holds(ledger_path: Path) -> None:
    limit = Limit("tenant:acme", day=Budget(usd="0.05"))
    provider = ScriptedProvider(usage=FIXED)
    with Runtime(ledger=ledger_path, provider=provider, limits=[limit]) as rt:
        outcomes = [rt.run_sync(Worker, f"Task {i}.", tenant="acme") for i in range(40)]
        other = rt.run_sync(Worker, "Other tenant.", tenant="globex")
        day = next(a for a in _accounts(rt) if a.startswith("tenant:acme:day:"))
        account = rt.ledger.account(day)
    assert account is not None and account.cap_picos == to_picos(Decimal("0.05"))
    assert account.spent_picos <= account.cap_picos and account.reserved_picos == 0
    done = [o for o in outcomes if o.status is TaskStatus.SUCCEEDED]
    stopped = [o for o in outcomes if o.status is TaskStatus.BUDGET_EXCEEDED]
    assert done and stopped
    assert sum((o.cost_usd or 0) for o in outcomes) == from_picos(account.spent_picos)
    assert all(o.stop_reason and f"account {day}" in o.stop_reason for o in stopped)
    assert other.status is TaskStatus.SUCCEEDED  # another tenant's day account is untouched


def _accounts(rt: Runtime) -> list[str]:
    from sqlmodel import select

    from paymaster.ledger import AccountRecord

    with rt.ledger.session() as s:
        return [a.id for a in s.exec(select(AccountRecord)).all()]


def test_tag_budgets_need_declared_tag_keys_and_catch_misspelt_tags(ledger_path: Path) -> None:
    limit = Limit("tag:team=support", month=Budget(usd="1"))
    with pytest.raises(ConfigurationError, match=r"declare the tag keys.*tag_keys=\['team'\]"):
        Runtime(ledger=ledger_path, provider=ScriptedProvider(), limits=[limit])
    with pytest.raises(ConfigurationError, match="no task sets tag 'team'"):
        Runtime(ledger=ledger_path, provider=ScriptedProvider(), limits=[limit], tag_keys=["env"])
    with Runtime(ledger=ledger_path, provider=ScriptedProvider(), limits=[limit], tag_keys=["team"]) as rt:
        with pytest.raises(ConfigurationError, match=r"unknown tag key\(s\) \['tem'\]"):
            rt.run_sync(Worker, "hello", tags={"tem": "support"})
        assert rt.run_sync(Worker, "hello", tags={"team": "support"}).status is TaskStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Limit("tenat:acme", day=Budget(usd="1")), "unknown account 'tenat:acme'"),
        (lambda: Limit("tag:team", day=Budget(usd="1")), "unknown account 'tag:team'"),
        (lambda: Limit("tenant:acme"), "sets none of day=, month= or rate="),
        (lambda: Limit("tenant:acme", day=Budget(retries=2)), "retries, retry_usd and depth belong on a task"),
    ],
)
def test_bad_limits_are_rejected_at_construction(make: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make()  # type: ignore[operator]


def test_limits_from_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "paymaster.toml"
    config.write_text('tag_keys = ["team"]\n[limits."tag:team=support"]\nday = {usd = "-1"}\n')
    with pytest.raises(ConfigurationError, match="greater than or equal to 0"):
        Runtime(ledger=tmp_path / "l.db", provider=ScriptedProvider(), config=config)
    config.write_text('[limits."agent:worker"]\nweek = {usd = "1"}\n')
    with pytest.raises(ConfigurationError, match="takes only day"):
        Runtime(ledger=tmp_path / "l.db", provider=ScriptedProvider(), config=config)


def test_retries_are_rows_of_kind_retry_and_honour_the_retry_budget(ledger_path: Path) -> None:
    overloaded = OverloadedError("overloaded", provider="scripted", status_code=529)
    provider = ScriptedProvider([overloaded, overloaded, overloaded], usage=FIXED)
    with Runtime(ledger=ledger_path, provider=provider, retry=FAST) as rt:
        outcome = rt.run_sync(Worker, "hi", budget=Budget(retries=1))
        steps = rt.ledger.steps(outcome.task_id)
    assert [(s.kind, s.status, s.attempt) for s in steps] == [
        ("execute", "error", 1), ("retry", "error", 2), ("retry", "refused", 3)
    ]
    assert outcome.status is TaskStatus.BUDGET_EXCEEDED
    assert outcome.stop_reason is not None
    assert outcome.stop_reason.startswith(f"steps cap of account task:{outcome.task_id}:retries")
    assert "gave up retrying after OverloadedError" in outcome.stop_reason


def test_retry_usd_caps_what_retries_may_spend(ledger_path: Path) -> None:
    limited = RateLimitError("slow down", provider="scripted", retry_after=0)
    provider = ScriptedProvider([limited], usage=FIXED)
    with Runtime(ledger=ledger_path, provider=provider, retry=FAST) as rt:
        outcome = rt.run_sync(Worker, "hi", budget=Budget(retry_usd="0.0001"))
    assert outcome.status is TaskStatus.BUDGET_EXCEEDED
    assert outcome.stop_reason is not None and outcome.stop_reason.startswith("usd cap of account task:")


def test_retry_after_is_honoured_up_to_its_limit() -> None:
    from tenacity import RetryCallState

    policy = RetryPolicy(initial_wait=0.5, max_retry_after=30)
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.set_exception((RateLimitError, RateLimitError("429", retry_after=7.5), None))
    assert policy.wait(state) == 7.5
    state.set_exception((RateLimitError, RateLimitError("429", retry_after=600), None))
    assert policy.wait(state) == 30


@tool(price_usd="0.01")
def lookup_order(order_id: int) -> dict[str, object]:
    """Look up an order by id."""
    return {"order_id": order_id, "status": "delivered"}


class Clerk(Agent):
    name = "clerk"
    tools = [lookup_order]  # noqa: RUF012


def _asks_for_tools(times: int) -> ScriptedProvider:
    replies: list[ModelResponse | str] = [
        ModelResponse(text="", usage=FIXED, model="m",
                      tool_calls=(ToolCall(id=f"c{i}", name="lookup_order", arguments={"order_id": i}),))
        for i in range(times)
    ]
    return ScriptedProvider([*replies, "done"], usage=FIXED)


def test_tool_calls_are_priced_rows_and_capped(ledger_path: Path) -> None:
    with Runtime(ledger=ledger_path, provider=_asks_for_tools(3)) as rt:
        outcome = rt.run_sync(Clerk, "Where is my order?", budget=Budget(tool_calls=2))
        steps = rt.ledger.steps(outcome.task_id)
    tools = [s for s in steps if s.kind == "tool"]
    assert [(s.status, s.model) for s in tools] == [("ok", "lookup_order"), ("ok", "lookup_order"),
                                                     ("refused", "lookup_order")]
    assert all(s.cost_picos == to_picos(Decimal("0.01")) for s in tools[:2])
    assert outcome.status is TaskStatus.BUDGET_EXCEEDED
    assert outcome.stop_reason is not None and outcome.stop_reason.startswith("tool_calls cap")
    model_cost = sum(from_picos(s.cost_picos or 0) for s in steps if s.kind == "execute")
    assert outcome.cost_usd == model_cost + Decimal("0.02")
    model_baseline = sum(from_picos(s.baseline_picos or 0) for s in steps if s.kind == "execute")
    assert outcome.baseline_usd == model_baseline + Decimal("0.02")  # the deep tier would pay for the tools too


def test_a_tool_result_reaches_the_model(ledger_path: Path) -> None:
    provider = _asks_for_tools(1)
    with Runtime(ledger=ledger_path, provider=provider) as rt:
        outcome = rt.run_sync(Clerk, "Where is order 0?")
    assert outcome.output == "done"
    follow_up = provider.calls[1].request
    assert follow_up.messages[-1].role == "tool"
    assert '"status": "delivered"' in follow_up.messages[-1].content
    assert [t.name for t in follow_up.tools] == ["lookup_order"]


def test_wall_clock_cap_stops_a_slow_task_and_counts_the_cut_call(ledger_path: Path) -> None:
    with Runtime(ledger=ledger_path, provider=ScriptedProvider(latency=30)) as rt:
        outcome = rt.run_sync(Worker, "hi", budget=Budget(wall_seconds=0.2))
        (step,) = rt.ledger.steps(outcome.task_id)
    assert outcome.status is TaskStatus.BUDGET_EXCEEDED
    assert outcome.stop_reason is not None and outcome.stop_reason.startswith("wall_seconds cap")
    assert step.status == "unsettled" and step.cost_picos == step.reserved_picos > 0
    assert outcome.cost_usd == from_picos(step.reserved_picos)


def test_sub_agents_nest_inside_the_parent_budget_and_depth_is_capped(ledger_path: Path) -> None:
    children: list[TaskStatus] = []
    holder: dict[str, Runtime] = {}

    @tool
    async def delegate(question: str) -> str:
        """Ask a helper agent."""
        child = await holder["rt"].run(Worker, question, budget=Budget(usd="1"))
        children.append(child.status)
        return child.output or child.stop_reason or ""

    class Lead(Agent):
        name = "lead"
        tools = [delegate]  # noqa: RUF012

    asks = ModelResponse(text="", usage=FIXED, model="m",
                         tool_calls=(ToolCall(id="c1", name="delegate", arguments={"question": "Sub question."}),))
    with Runtime(ledger=ledger_path, provider=ScriptedProvider([asks, "child answer", "final"], usage=FIXED)) as rt:
        holder["rt"] = rt
        outcome = rt.run_sync(Lead, "Lead task.", budget=Budget(usd="0.05", depth=1))
        parent_account = rt.ledger.account(f"task:{outcome.task_id}")
        child_task = next(t for t in rt.ledger.tasks() if t.parent_id == outcome.task_id)
    assert outcome.status is TaskStatus.SUCCEEDED and outcome.output == "final"
    assert children == [TaskStatus.SUCCEEDED]
    assert child_task.depth == 1
    # The child's call is charged to the parent's task account too: 3 calls of $0.002.
    assert parent_account is not None and from_picos(parent_account.spent_picos) == Decimal("0.006")
    assert outcome.cost_usd == Decimal("0.004")  # the lead's own calls; the child's are on its own row

    with Runtime(ledger=ledger_path, provider=ScriptedProvider([asks, "final"], usage=FIXED)) as rt:
        holder["rt"] = rt
        children.clear()
        rt.run_sync(Lead, "Lead task.", budget=Budget(depth=0))
    assert children == [TaskStatus.BUDGET_EXCEEDED]


class Deep(Agent):
    name = "deep"
    complexity = Complexity.COMPLEX


def test_downgrade_policy_moves_to_a_cheaper_tier_when_the_deep_one_cannot_fit(ledger_path: Path) -> None:
    class Frugal(Deep):
        name = "frugal"
        on_cap = ("downgrade", "halt")

    with Runtime(ledger=ledger_path, provider=ScriptedProvider()) as rt:
        outcome = rt.run_sync(Frugal, "Research this.", budget=Budget(usd="0.02"))
        steps = rt.ledger.steps(outcome.task_id)
    assert outcome.status is TaskStatus.SUCCEEDED
    assert [(s.tier, s.status) for s in steps] == [("deep", "refused"), ("balanced", "ok")]
    assert steps[1].note == "downgraded from deep to balanced: usd cap"


def test_truncate_policy_cuts_old_context_to_fit(ledger_path: Path) -> None:
    class Trimmer(Agent):
        name = "trimmer"
        on_cap = ("truncate",)

    provider = ScriptedProvider()
    long_input = "Old context. " * 4000 + "The question: what is 2+2?"
    with Runtime(ledger=ledger_path, provider=provider) as rt:
        outcome = rt.run_sync(Trimmer, long_input, budget=Budget(tokens=20_000))
        steps = rt.ledger.steps(outcome.task_id)
    assert outcome.status is TaskStatus.SUCCEEDED
    assert [s.status for s in steps] == ["refused", "ok"]
    sent = provider.calls[0].request.messages[-1].content
    assert sent.startswith("[earlier context cut to fit the budget]") and sent.endswith("what is 2+2?")
    assert len(sent) < len(long_input)


def test_approval_pauses_the_task_and_raises_the_cap_when_granted(ledger_path: Path) -> None:
    class Careful(Deep):
        name = "careful"
        on_cap = ("approve", "halt")

    asked: list[ApprovalRequest] = []
    seen_status: list[str] = []

    async def approver(request: ApprovalRequest) -> bool:
        asked.append(request)
        task = rt.ledger.task(request.task_id)
        seen_status.append(task.status if task else "?")
        await anyio.sleep(0.01)  # a human takes their time; the task waits
        return True

    with Runtime(ledger=ledger_path, provider=ScriptedProvider(), approver=approver) as rt:
        outcome = rt.run_sync(Careful, "Big job.", budget=Budget(usd="0.01"))
    assert outcome.status is TaskStatus.SUCCEEDED
    assert seen_status == ["awaiting_approval"]
    (request,) = asked
    assert request.dimension == "usd" and request.shortfall_usd is not None and request.shortfall_usd > 0


def test_approval_refused_halts(ledger_path: Path) -> None:
    class Careful(Deep):
        name = "careful2"
        on_cap = ("approve",)

    async def no(request: ApprovalRequest) -> bool:
        return False

    with Runtime(ledger=ledger_path, provider=ScriptedProvider(), approver=no) as rt:
        outcome = rt.run_sync(Careful, "Big job.", budget=Budget(usd="0.01"))
    assert outcome.status is TaskStatus.BUDGET_EXCEEDED


def test_approve_policy_without_an_approver_is_a_configuration_error(ledger_path: Path) -> None:
    class Careful(Agent):
        name = "careful3"
        on_cap = ("approve",)

    with Runtime(ledger=ledger_path, provider=ScriptedProvider()) as rt, pytest.raises(
        ConfigurationError, match="no approver"
    ):
        rt.run_sync(Careful, "x")


@pytest.mark.anyio
async def test_kill_switch_stops_running_tasks_now_and_keeps_their_rows(ledger_path: Path) -> None:
    with Runtime(ledger=ledger_path, provider=ScriptedProvider(latency=30)) as rt:
        outcomes = []

        async def one(i: int) -> None:
            outcomes.append(await rt.run(Worker, f"job {i}", tenant="acme" if i % 2 else "globex"))

        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(one, i)
            await anyio.sleep(0.2)
            assert rt.kill(tenant="acme") == 3
            await anyio.sleep(0.05)
            rt.kill(tenant="globex")
        assert sorted(o.status.value for o in outcomes) == ["killed"] * 6
        for o in outcomes:
            (step,) = rt.ledger.steps(o.task_id)
            assert step.status == "unsettled" and o.cost_usd == from_picos(step.reserved_picos)
        refused = await rt.run(Worker, "new job", tenant="acme")
        assert refused.status is TaskStatus.KILLED and refused.calls == 0
        rt.revive(tenant="acme")
    with Runtime(ledger=ledger_path, provider=ScriptedProvider()) as rt:
        assert (await rt.run(Worker, "after revive", tenant="acme")).status is TaskStatus.SUCCEEDED


def test_alerts_fire_once_per_threshold(ledger_path: Path) -> None:
    alerts: list[Alert] = []
    limit = Limit("agent:worker", day=Budget(usd="0.05"))  # a call costs $0.002, its worst case ~$0.0105
    with Runtime(
        ledger=ledger_path, provider=ScriptedProvider(usage=FIXED), limits=[limit],
        on_alert=alerts.append, alert_thresholds=(0.5, 0.8),
    ) as rt:
        for _ in range(30):
            rt.run_sync(Worker, "hi")
    day_alerts = [(a.dimension, a.threshold) for a in alerts if ":day:" in a.account]
    assert day_alerts == [("usd", 0.5), ("usd", 0.8)]


class ThreeSteps:
    """A planner with a fixed three-subtask plan."""

    async def plan(self, goal: str, ctx: PlanContext) -> Plan:
        return Plan(subtasks=(
            Subtask(id="a", goal=goal, complexity=Complexity.COMPLEX),
            Subtask(id="b", goal=goal, complexity=Complexity.COMPLEX),
            Subtask(id="c", goal="combine", complexity=Complexity.COMPLEX, depends_on=("a", "b")),
        ))


def test_plan_admission_refuses_a_plan_whose_upper_bound_exceeds_what_is_left(ledger_path: Path) -> None:
    provider = ScriptedProvider()
    with Runtime(ledger=ledger_path, provider=provider, planner=ThreeSteps()) as rt:
        outcome = rt.run_sync(Worker, "Study this.", budget=Budget(usd="0.10"))
        (step,) = rt.ledger.steps(outcome.task_id)
        task = rt.ledger.task(outcome.task_id)
    assert provider.calls == []
    assert outcome.status is TaskStatus.BUDGET_EXCEEDED
    assert outcome.stop_reason is not None and outcome.stop_reason.startswith("plan admission: the plan may cost up to")
    assert (step.kind, step.status) == ("plan", "refused")
    assert task is not None and task.plan is not None and Decimal(task.plan["estimate"]["high_usd"]) > Decimal("0.1")


def test_independent_subtasks_run_at_the_same_time(ledger_path: Path) -> None:
    provider = ScriptedProvider(latency=0.2)
    with Runtime(ledger=ledger_path, provider=provider, planner=ThreeSteps()) as rt:
        outcome = rt.run_sync(Worker, "Study this.")
    assert outcome.status is TaskStatus.SUCCEEDED
    a, b, c = sorted(provider.calls, key=lambda call: call.started)[:3]
    assert b.started < a.finished  # a and b overlapped
    assert c.started >= max(a.finished, b.finished)  # c waited for both
    assert isinstance(c.request, ModelRequest) and "Result of step a" in c.request.messages[-1].content


def test_plan_admission_asks_the_approver_and_runs_when_granted(ledger_path: Path) -> None:
    class Asking(Agent):
        name = "asking"
        on_cap = ("approve",)

    asked: list[ApprovalRequest] = []

    async def approver(request: ApprovalRequest) -> bool:
        asked.append(request)
        return True

    provider = ScriptedProvider()
    with Runtime(ledger=ledger_path, provider=provider, planner=ThreeSteps(), approver=approver) as rt:
        outcome = rt.run_sync(Asking, "Study this.", budget=Budget(usd="0.10"))
        account = rt.ledger.account(f"task:{outcome.task_id}")
    assert outcome.status is TaskStatus.SUCCEEDED and len(provider.calls) == 3
    (request,) = asked
    assert request.reason.startswith("plan admission") and request.account == f"task:{outcome.task_id}"
    assert account is not None and account.cap_picos is not None and account.cap_picos > to_picos(Decimal("0.10"))
    assert account.spent_picos <= account.cap_picos


@pytest.mark.parametrize(("wait", "all_done"), [(30.0, True), (0.0, False)])
def test_calls_wait_for_in_flight_holds_instead_of_failing(ledger_path: Path, wait: float, all_done: bool) -> None:
    # Each call costs $0.002 but holds its worst case (~$0.0105) while in flight: only four fit
    # the $0.05 tenant cap at once, yet all twenty together spend $0.04.
    limit = Limit("tenant:acme", day=Budget(usd="0.05"))
    provider = ScriptedProvider(usage=FIXED, latency=0.05)
    with Runtime(ledger=ledger_path, provider=provider, limits=[limit], budget_wait=wait) as rt:
        outcomes: list[TaskStatus] = []

        async def many() -> None:
            async def one(i: int) -> None:
                outcomes.append((await rt.run(Worker, f"job {i}", tenant="acme")).status)

            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(one, i)

        anyio.run(many)
        day = next(a for a in _accounts(rt) if a.startswith("tenant:acme:day:"))
        account = rt.ledger.account(day)
    assert account is not None and account.cap_picos is not None
    assert account.spent_picos <= account.cap_picos
    assert (outcomes.count(TaskStatus.SUCCEEDED) == 20) is all_done


def test_plan_estimate_counts_the_expected_cache_read_of_a_shared_system_prompt(ledger_path: Path) -> None:
    from paymaster.runtime._admission import admit

    class LongBrief(Agent):
        name = "long-brief"
        instructions = "Follow the house style guide. " * 400  # ~2,400 tokens: cacheable

    with Runtime(ledger=ledger_path, provider=ScriptedProvider(), planner=ThreeSteps()) as rt:
        plan = anyio.run(ThreeSteps().plan, "Study this.", None)  # type: ignore[arg-type]
        decisions = {s.id: rt.router.route(s) for s in plan.subtasks}
        estimate = anyio.run(admit, rt.ledger, rt.prices, [], plan, decisions, LongBrief.instructions)
        two = anyio.run(admit, rt.ledger, rt.prices, [], Plan(subtasks=plan.subtasks[:2]), decisions,
                        LongBrief.instructions)
    assert estimate.low_usd is not None and two.low_usd is not None
    # Three deep calls, but the second and third read the ~2,400-token prompt at $0.30/MTok, not $3:
    # the third call adds far less than a third of the cost.
    assert estimate.low_usd < Decimal("1.3") * two.low_usd
    assert estimate.high_usd is not None and estimate.high_usd > 3 * estimate.low_usd


@pytest.mark.anyio
async def test_a_kill_thrown_by_another_worker_stops_calls_in_flight_here(ledger_path: Path) -> None:
    # Two runtimes, each with its own ledger connection: two workers sharing one database.
    with Runtime(ledger=ledger_path, provider=ScriptedProvider(latency=30)) as here, \
            Runtime(ledger=ledger_path, provider=ScriptedProvider()) as elsewhere:
        outcomes: list[Outcome] = []
        both_ended = anyio.Event()

        async def one(i: int) -> None:
            outcomes.append(await here.run(Worker, f"job {i}", tenant="acme" if i % 2 else "globex"))
            if len(outcomes) == 2:
                both_ended.set()

        started = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(one, i)
            await anyio.sleep(0.3)
            assert elsewhere.kill(tenant="acme") == 0  # none of the tasks runs in that worker
            with anyio.move_on_after(10):
                await both_ended.wait()
            tg.cancel_scope.cancel()  # the globex tasks would wait out their 30 s call
        assert anyio.current_time() - started < 10  # the kill reached this worker's calls in flight
        killed = [o for o in outcomes if o.status is TaskStatus.KILLED]
        assert len(killed) == 2 and all("acme" in (o.stop_reason or "") for o in killed)
        for o in killed:
            (step,) = here.ledger.steps(o.task_id)
            assert step.status == "unsettled" and o.cost_usd == from_picos(step.reserved_picos)
        here.revive(tenant="acme")
