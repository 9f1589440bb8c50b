"""A ticket classifier: simple work, so it routes to the cheapest tier."""

from paymaster import Agent, Budget, Complexity


class TicketTriage(Agent):
    name = "ticket-triage"
    instructions = "Classify the support ticket as billing, bug, account or other. Answer with one word."
    complexity = Complexity.SIMPLE
    budget = Budget(usd="0.01", tokens=4_000, steps=2)

    def evaluate(self, output: str) -> bool:
        return output.strip().lower().rstrip(".") in {"billing", "bug", "account", "other"}


AGENT = TicketTriage
INPUTS = [
    "Billing. I was charged twice for my March invoice.",
    "Bug. The export button does nothing in Firefox.",
]


def REPLY(request):
    """Offline stand-in for the model: answer with the ticket's leading label."""
    return request.messages[-1].content.split(".")[0].lower()
