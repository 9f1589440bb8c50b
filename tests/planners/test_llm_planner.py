"""The LLM planner: one structured plan request, at most one repair, and a clear PlanInvalid after that."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from paymaster import Agent, Runtime, ScriptedProvider, TaskStatus
from paymaster.planners import (
    Complexity,
    LLMPlanner,
    Plan,
    PlanContext,
    PlanInvalid,
    Subtask,
    is_simple,
)
from paymaster.planners._llm import default_max_tokens, plan_schema
from paymaster.providers import ModelRequest, ModelResponse, Usage

pytestmark = pytest.mark.anyio

GOAL = "Refund order 1234 if the customer was charged twice, and draft a reply to them."


class FakeCall:
    """A stand-in for PlanContext.call: answers from a list and keeps every request."""

    def __init__(self, *replies: str | ModelResponse | BaseException) -> None:
        self.replies = list(replies)
        self.requests: list[ModelRequest] = []

    async def __call__(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        if not self.replies:
            raise AssertionError("the planner made more calls than the test scripted")
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, ModelResponse):
            return reply
        return ModelResponse(text=reply, usage=Usage(input_tokens=10, output_tokens=10), model=request.model)


def context(call: FakeCall, *, max_subtasks: int = 8) -> PlanContext:
    return PlanContext(default_complexity=Complexity.MODERATE, max_subtasks=max_subtasks, call=call, model="m")


def sub(id: str, complexity: str = "simple", depends_on: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    fields = {"id": id, "goal": f"do {id}", "complexity": complexity, "depends_on": depends_on or []}
    fields.setdefault("expected_output", f"{id} done")
    return {**fields, **extra}


def plan_json(*subtasks: dict[str, Any]) -> str:
    return json.dumps({"subtasks": list(subtasks)})


VALID = plan_json(
    sub("check_charges", "simple"),
    sub("decide_refund", "moderate", ["check_charges"]),
    sub("draft_reply", "complex", ["decide_refund"]),
)
EXPECTED = Plan(
    subtasks=(
        Subtask(
            id="check_charges",
            goal="do check_charges",
            complexity=Complexity.SIMPLE,
            expected_output="check_charges done",
        ),
        Subtask(
            id="decide_refund",
            goal="do decide_refund",
            complexity=Complexity.MODERATE,
            depends_on=("check_charges",),
            expected_output="decide_refund done",
        ),
        Subtask(
            id="draft_reply",
            goal="do draft_reply",
            complexity=Complexity.COMPLEX,
            depends_on=("decide_refund",),
            expected_output="draft_reply done",
        ),
    )
)

# (first reply, a fragment the validation errors must contain)
INVALID = {
    "not_json": ("Sure! First I'd look up the order, then refund it.", "not valid JSON"),
    "empty_reply": ("", "the reply is empty"),
    "cycle": (plan_json(sub("a", depends_on=["b"]), sub("b", depends_on=["a"])), "cycle among subtasks ['a', 'b']"),
    "self_cycle": (plan_json(sub("a", depends_on=["a"])), "cycle"),
    "unknown_dependency": (plan_json(sub("a"), sub("b", depends_on=["ghost"])), "unknown subtask(s) ['ghost']"),
    "too_many": (plan_json(*(sub(f"s{i}") for i in range(500))), "the plan has 500 subtasks; at most 8"),
    "no_subtasks": (plan_json(), "no subtasks"),
    "unknown_complexity": (plan_json(sub("a", "hard")), "subtasks[0].complexity: Input should be 'simple'"),
    "duplicate_ids": (plan_json(sub("a"), sub("a")), "ids must be unique; repeated: ['a']"),
    "missing_goal": (json.dumps({"subtasks": [{"id": "a", "complexity": "simple"}]}), "subtasks[0].goal: Field"),
    "misspelt_key": (plan_json(sub("a", dependencies=["b"])), "subtasks[0].dependencies: Extra inputs"),
    "empty_id": (plan_json(sub("")), "subtasks[0].id: String should have at least 1 character"),
    "not_an_object": ('"a plan"', "must be a JSON object with a 'subtasks' array"),
}
CASES = [pytest.param(reply, fragment, id=name) for name, (reply, fragment) in INVALID.items()]


async def test_a_valid_plan_takes_one_call_and_parses_into_subtasks() -> None:
    call = FakeCall(VALID)
    plan = await LLMPlanner().plan(GOAL, context(call))
    assert plan == EXPECTED
    (request,) = call.requests
    assert request.model == "m"
    assert request.json_schema == plan_schema()
    assert [(m.role, m.content) for m in request.messages] == [("user", GOAL)]
    assert request.system is not None and "At most 8 subtasks." in request.system
    assert "$" not in request.system  # every placeholder filled
    assert request.max_tokens == default_max_tokens(8)


def test_the_schema_is_provider_friendly() -> None:
    schema = plan_schema()
    assert "$ref" not in json.dumps(schema) and "$defs" not in schema

    def check(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node:
                assert node["additionalProperties"] is False
                assert node["required"] == list(node["properties"])
            assert "title" not in node and "default" not in node
            for value in node.values():
                check(value)
        elif isinstance(node, list):
            for value in node:
                check(value)

    check(schema)
    item = schema["properties"]["subtasks"]["items"]
    assert set(item["properties"]) == {"id", "goal", "complexity", "depends_on", "expected_output"}
    assert item["properties"]["complexity"]["enum"] == ["simple", "moderate", "complex"]
    schema["properties"].clear()  # a caller's copy: changing it must not change the next request's schema
    assert plan_schema()["properties"]


@pytest.mark.parametrize(("bad", "fragment"), CASES)
async def test_an_invalid_plan_gets_one_repair_request_that_can_succeed(bad: str, fragment: str) -> None:
    call = FakeCall(bad, VALID)
    plan = await LLMPlanner().plan(GOAL, context(call))
    assert plan == EXPECTED
    first, repair = call.requests
    assert repair.json_schema == plan_schema() and repair.system == first.system
    task, previous, ask = repair.messages
    assert (task.role, task.content) == ("user", GOAL)
    assert previous.role == "assistant"
    assert previous.content == (bad if bad else "(empty reply)") or "more characters cut" in previous.content
    assert ask.role == "user"
    assert fragment in ask.content  # the repair request carries the validation errors


@pytest.mark.parametrize(("bad", "fragment"), CASES)
async def test_a_second_invalid_plan_raises_plan_invalid_with_reason_and_raw_text(bad: str, fragment: str) -> None:
    call = FakeCall("not a plan", bad)
    with pytest.raises(PlanInvalid) as caught:
        await LLMPlanner().plan(GOAL, context(call))
    assert len(call.requests) == 2  # exactly one repair, never a third call
    assert caught.value.raw == bad  # the raw reply of the last attempt, for the ledger
    assert fragment in caught.value.reason
    assert caught.value.reason.startswith("the planner's reply was not a valid plan, even after one repair request")
    assert str(caught.value) == caught.value.reason


async def test_the_repair_request_echoes_a_long_reply_clipped() -> None:
    bad = INVALID["too_many"][0]
    call = FakeCall(bad, VALID)
    await LLMPlanner().plan(GOAL, context(call))
    echoed = call.requests[1].messages[1].content
    assert len(echoed) < len(bad) and echoed.startswith(bad[:100]) and "more characters cut" in echoed


async def test_a_long_error_list_is_capped() -> None:
    bad = plan_json(*(sub(f"s{i}", "hard") for i in range(30)))
    call = FakeCall(bad, bad)
    with pytest.raises(PlanInvalid) as caught:
        await LLMPlanner().plan(GOAL, context(call, max_subtasks=50))
    assert "subtasks[19].complexity" in caught.value.reason and "subtasks[20]" not in caught.value.reason
    assert "... and 10 more" in caught.value.reason
    assert "... and 10 more" in call.requests[1].messages[2].content


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(f"```json\n{VALID}\n```", id="json_fence"),
        pytest.param(f"```\n{VALID}\n```", id="bare_fence"),
        pytest.param(f"Here is the plan:\n\n```json\n{VALID}\n```\nLet me know!", id="fence_in_prose"),
        pytest.param(json.dumps(json.loads(VALID)["subtasks"]), id="bare_array"),
    ],
)
async def test_fenced_json_and_a_bare_array_are_accepted_without_repair(reply: str) -> None:
    call = FakeCall(reply)
    assert await LLMPlanner().plan(GOAL, context(call)) == EXPECTED
    assert len(call.requests) == 1


async def test_missing_optional_fields_take_their_defaults() -> None:
    call = FakeCall(json.dumps({"subtasks": [{"id": "a", "goal": "do a", "complexity": "simple"}]}))
    plan = await LLMPlanner().plan(GOAL, context(call))
    assert plan.subtasks == (Subtask(id="a", goal="do a", complexity=Complexity.SIMPLE),)


async def test_a_reply_cut_off_at_max_tokens_says_so_in_the_repair_request() -> None:
    cut = ModelResponse(text=VALID[:40], usage=Usage(output_tokens=5), model="m", finish_reason="length")
    call = FakeCall(cut, VALID)
    assert await LLMPlanner(max_tokens=5).plan(GOAL, context(call)) == EXPECTED
    assert all(r.max_tokens == 5 for r in call.requests)
    assert "cut off at its max_tokens" in call.requests[1].messages[2].content


async def test_a_refused_or_failed_call_propagates_untouched() -> None:
    class Refused(Exception):
        pass

    call = FakeCall(Refused("over budget"))
    with pytest.raises(Refused):
        await LLMPlanner().plan(GOAL, context(call))
    assert len(call.requests) == 1


def test_max_tokens_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_tokens must be positive"):
        LLMPlanner(max_tokens=0)


async def test_skip_planning_makes_no_call_and_returns_one_simple_step() -> None:
    call = FakeCall()
    goal = "What is the capital of France?"
    plan = await LLMPlanner(skip_if=is_simple).plan(goal, context(call))
    assert call.requests == []
    assert plan.subtasks == (Subtask(id="main", goal=goal, complexity=Complexity.SIMPLE),)


async def test_skip_if_false_still_plans() -> None:
    call = FakeCall(VALID)
    assert await LLMPlanner(skip_if=is_simple).plan(GOAL, context(call)) == EXPECTED
    assert len(call.requests) == 1


@pytest.mark.parametrize(
    ("goal", "simple"),
    [
        ("What is the capital of France?", True),
        ("Translate 'good morning' into Spanish", True),
        ("Round 3.14159 to two decimals.", True),
        ("", False),
        ("Look up order 1234. Refund it if it was charged twice.", False),
        ("Find the order, then email the customer", False),
        ("Refund order 1234 and email the customer", False),
        ("Summarise this:\nline one\nline two", False),
        ("Do these: 1) check stock 2) reorder", False),
        (" ".join(["word"] * 31), False),
    ],
)
def test_is_simple_is_a_conservative_heuristic(goal: str, simple: bool) -> None:
    assert is_simple(goal) is simple


async def test_works_with_the_scripted_provider_as_the_call() -> None:
    provider = ScriptedProvider([f"```json\n{VALID}\n```"])
    ctx = PlanContext(default_complexity=Complexity.MODERATE, max_subtasks=8, call=provider.complete, model="m")
    assert await LLMPlanner().plan(GOAL, ctx) == EXPECTED
    (recorded,) = provider.calls
    assert recorded.request.json_schema == plan_schema()


class Support(Agent):
    name = "support"


def test_a_runtime_with_the_llm_planner_records_the_plan_call(ledger_path: Path) -> None:
    def reply(request: ModelRequest) -> str:
        return VALID if request.json_schema is not None else f"done: {request.messages[-1].content[-20:]}"

    with Runtime(ledger=ledger_path, provider=ScriptedProvider(reply), planner=LLMPlanner()) as rt:
        outcome = rt.run_sync(Support, GOAL)
        steps = rt.ledger.steps(outcome.task_id)
    assert outcome.status is TaskStatus.SUCCEEDED
    assert [s.kind for s in steps].count("plan") == 1  # the planner tier was asked once, and the call recorded
    assert {s.subtask_id for s in steps if s.kind == "execute"} == {s.id for s in EXPECTED.subtasks}
