"""Tool policies: who may call a tool, and when a person must approve the call."""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.lowlevel

from paymaster import Agent, ApprovalRequest, Budget, ModelResponse, Runtime, ScriptedProvider, Usage, tool
from paymaster.providers import ToolCall

USAGE = Usage(input_tokens=20, output_tokens=5)
CALLED: list[str] = []


@tool(price_usd="0.10", roles=["analyst"], min_budget_usd="1")
def market_data(symbol: str) -> str:
    """Premium market data for a symbol."""
    CALLED.append(symbol)
    return f"{symbol}: 101.5"


@tool(approve_after_calls=2)
def lookup(order_id: int) -> str:
    """Look up an order."""
    CALLED.append(str(order_id))
    return "delivered"


def _asks(name: str, n: int, **arguments: object) -> ScriptedProvider:
    calls = [
        ModelResponse(text="", usage=USAGE, model="gpt-4o-mini",
                      tool_calls=(ToolCall(id=f"c{i}", name=name, arguments=dict(arguments)),))
        for i in range(n)
    ]
    return ScriptedProvider([*calls, "done"], usage=USAGE)


class Analyst(Agent):
    name = "analyst"
    role = "analyst"
    tools = [market_data]  # noqa: RUF012


class Intern(Agent):
    name = "intern"
    role = "intern"
    tools = [market_data]  # noqa: RUF012


class Clerk(Agent):
    name = "clerk"
    tools = [lookup]  # noqa: RUF012


def test_a_tool_for_other_roles_is_never_called_and_the_refusal_is_on_the_ledger(ledger_path: Path) -> None:
    CALLED.clear()
    provider = _asks("market_data", 1, symbol="ACME")
    with Runtime(ledger=ledger_path, provider=provider) as rt:
        outcome = rt.run_sync(Intern, "Price ACME.", budget=Budget(usd="5"))
        steps = rt.ledger.steps(outcome.task_id)
    assert CALLED == []
    (refused,) = [s for s in steps if s.kind == "tool"]
    assert refused.status == "refused" and refused.cost_picos == 0
    assert refused.error is not None and "role ['analyst']" in refused.error and "'intern'" in refused.error
    # The model got the refusal as the tool's answer, and the task went on.
    assert "refused: tool 'market_data' is for agents with role" in provider.calls[1].request.messages[-1].content
    assert outcome.output == "done"


def test_a_premium_tool_needs_a_large_enough_task_budget(ledger_path: Path) -> None:
    CALLED.clear()
    with Runtime(ledger=ledger_path, provider=_asks("market_data", 1, symbol="ACME")) as rt:
        poor = rt.run_sync(Analyst, "Price ACME.", budget=Budget(usd="0.50"))
        poor_steps = rt.ledger.steps(poor.task_id)
    assert CALLED == []
    (refused,) = [s for s in poor_steps if s.kind == "tool"]
    assert refused.error is not None and "at least $1" in refused.error
    with Runtime(ledger=ledger_path, provider=_asks("market_data", 1, symbol="ACME")) as rt:
        rich = rt.run_sync(Analyst, "Price ACME.", budget=Budget(usd="2"))
        (paid,) = [s for s in rt.ledger.steps(rich.task_id) if s.kind == "tool"]
    assert CALLED == ["ACME"] and paid.status == "ok"


def test_calls_past_the_threshold_wait_for_approval_and_resume_or_are_refused(ledger_path: Path) -> None:
    CALLED.clear()
    asked: list[ApprovalRequest] = []
    status_while_asking: list[str] = []
    holder: dict[str, Runtime] = {}

    async def approver(request: ApprovalRequest) -> bool:
        asked.append(request)
        task = holder["rt"].ledger.task(request.task_id)
        status_while_asking.append(task.status if task else "?")
        await anyio.lowlevel.checkpoint()
        return len(asked) == 1  # the first request is approved, the second is not

    with Runtime(ledger=ledger_path, provider=_asks("lookup", 4, order_id=7), approver=approver) as rt:
        holder["rt"] = rt
        outcome = rt.run_sync(Clerk, "Where is order 7?")
        tools = [s for s in rt.ledger.steps(outcome.task_id) if s.kind == "tool"]
    assert [s.status for s in tools] == ["ok", "ok", "ok", "refused"]  # calls 3 (approved) and 4 (not)
    assert CALLED == ["7", "7", "7"]
    assert len(asked) == 2 and "call 3 of tool 'lookup'" in asked[0].reason
    assert status_while_asking == ["awaiting_approval", "awaiting_approval"]
    assert tools[3].error is not None and tools[3].error.endswith("not approved")
    assert outcome.status.value == "succeeded"
