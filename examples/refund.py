"""A customer-support refund agent: looks the order up, checks for fraud (a paid API), then decides.

Run it alone with `python examples/refund.py`: on the real APIs when OPENAI_API_KEY and
ANTHROPIC_API_KEY are set, otherwise offline on a scripted model.
"""

from __future__ import annotations

import json
import os
import re

from paymaster import Agent, Budget, ModelRequest, ModelResponse, Rate, Runtime, ScriptedProvider, tool
from paymaster.providers import ToolCall, counted_usage

ORDERS = {
    1234: {"order_id": 1234, "item": "espresso grinder", "total_usd": "59.90", "status": "delivered damaged"},
    5678: {"order_id": 5678, "item": "gift card", "total_usd": "500.00", "status": "delivered"},
}


@tool(roles=["support"])
def lookup_order(order_id: int) -> dict[str, object]:
    """Look up an order: item, total and delivery status."""
    return ORDERS.get(order_id, {"error": f"no order {order_id}"})


# Support agents only; past $0.05 of checks in one task each further check waits for a person's
# approval; at most 30 checks a minute over every agent and process sharing the ledger.
@tool(price_usd="0.002", roles=["support"], approve_over_usd="0.05", rate=Rate(calls_per_minute=30))
def fraud_check(order_id: int, amount_usd: str) -> dict[str, object]:
    """Score the refund request for fraud (a paid third-party API: $0.002 a call)."""
    risky = float(amount_usd) >= 300
    return {"order_id": order_id, "risk": "high" if risky else "low"}


class RefundAgent(Agent):
    name = "refund"
    version = "3"
    instructions = (
        "You handle refund requests. Look the order up, run a fraud check on its total, then answer in one "
        "sentence: 'Refund approved' or 'Refund declined', with the order id, amount and reason."
    )
    tools = [lookup_order, fraud_check]  # noqa: RUF012
    budget = Budget(usd="0.05", steps=6, tool_calls=4)
    human_cost_usd = "8.50"  # a support agent's cost per resolved refund ticket; for ROI
    rate = Rate(calls_per_minute=60, usd_per_minute="0.50")  # shared by every process on the ledger
    on_cap = ("downgrade", "halt")
    role = "support"

    def evaluate(self, output: str) -> bool:
        return output.startswith(("Refund approved", "Refund declined"))


def REPLY(request: ModelRequest) -> ModelResponse | str:
    """Offline stand-in for the model: call the tools in turn, then decide from their results."""
    results = [json.loads(m.content) for m in request.messages if m.role == "tool"]
    order_id = int(next(iter(re.findall(r"\d{3,}", request.messages[0].content)), "0"))

    def call(name: str, **arguments: object) -> ModelResponse:
        text = ""
        calls = (ToolCall(id=f"{name}-{order_id}", name=name, arguments=arguments),)
        return ModelResponse(text=text, usage=counted_usage(request, name), model=request.model, tool_calls=calls)

    if not results:
        return call("lookup_order", order_id=order_id)
    order = results[0]
    if "error" in order:
        return f"Refund declined: order {order_id} was not found."
    if len(results) == 1:
        return call("fraud_check", order_id=order_id, amount_usd=order["total_usd"])
    if results[1]["risk"] == "high":
        return f"Refund declined for order {order_id} (${order['total_usd']}): flagged for manual fraud review."
    return f"Refund approved for order {order_id} (${order['total_usd']}): {order['item']} {order['status']}."


AGENT = RefundAgent
INPUTS = [
    "Order 1234 arrived with a cracked hopper. I'd like my money back.",
    "Please refund order 5678, I changed my mind.",
]

if __name__ == "__main__":
    live = os.environ.get("OPENAI_API_KEY") and os.environ.get("ANTHROPIC_API_KEY")
    with Runtime(provider=None if live else ScriptedProvider(REPLY)) as runtime:
        for text in INPUTS:
            outcome = runtime.run_sync(RefundAgent, text, tenant="acme", tags={"team": "support"})
            print(outcome.status.value, outcome.cost_usd, outcome.output)
