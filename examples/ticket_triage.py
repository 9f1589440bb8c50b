"""A ticket classifier: simple work, so it routes to the cheapest tier.

Run it alone with `python examples/ticket_triage.py`: on the real APIs when OPENAI_API_KEY and
ANTHROPIC_API_KEY are set, otherwise offline on a scripted model (a keyword classifier).
"""

from __future__ import annotations

import os
import re

from paymaster import Agent, Budget, Complexity, ModelRequest, Rate, Runtime, ScriptedProvider

LABELS = ("billing", "bug", "account", "other")


class TicketTriage(Agent):
    name = "ticket-triage"
    instructions = "Classify the support ticket as billing, bug, account or other. Answer with one word."
    complexity = Complexity.SIMPLE
    budget = Budget(usd="0.01", tokens=4_000, steps=2)
    human_cost_usd = "0.75"  # a minute of a support agent's time per ticket; for ROI
    rate = Rate(calls_per_minute=300, usd_per_hour="1.00")

    def evaluate(self, output: str) -> bool:
        return output.strip().lower().rstrip(".") in LABELS


# Word stems that point at a label; the offline stand-in counts them.
_CUES = {
    "billing": r"bill|invoice|charg|refund|pric|pay|card|vat\b|seats?\b|plan\b|renew|monthly|yearly|subscri",
    "bug": r"error|crash|broken|does nothing|blank|typeerror|drops?\b|silently|twice|update\b|fails?\b|not working",
    "account": r"password|log ?in|locked|email address|delete my account|invite|admin|two-factor|2fa|workspace|reset",
}


def REPLY(request: ModelRequest) -> str:
    """Offline stand-in for the model: the label whose cue words the ticket uses most ("other" if none)."""
    ticket = request.messages[-1].content.lower()
    hits = {label: len(re.findall(rf"\b(?:{cues})", ticket)) for label, cues in _CUES.items()}
    best = max(hits, key=lambda label: hits[label])
    return best if hits[best] else "other"


AGENT = TicketTriage
INPUTS = [
    "I was charged twice for my March invoice.",
    "The export button does nothing in Firefox.",
]

if __name__ == "__main__":
    live = os.environ.get("OPENAI_API_KEY") and os.environ.get("ANTHROPIC_API_KEY")
    with Runtime(provider=None if live else ScriptedProvider(REPLY)) as runtime:
        for text in INPUTS:
            outcome = runtime.run_sync(TicketTriage, text, tenant="acme", tags={"team": "support"})
            print(f"{outcome.status.value} {outcome.cost_usd} {outcome.output!r} <- {text}")
