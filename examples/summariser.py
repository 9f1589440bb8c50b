"""A summariser: one moderate subtask on the balanced tier, capped at five cents.

Run it alone with `python examples/summariser.py`: on the real APIs when OPENAI_API_KEY and
ANTHROPIC_API_KEY are set, otherwise offline on a scripted model (which keeps the first two sentences).
"""

import os

from paymaster import Agent, Budget, Rate, Runtime, ScriptedProvider


class Summariser(Agent):
    name = "summariser"
    instructions = "Summarise the user's text in two sentences. Keep every number exactly as written."
    budget = Budget(usd="0.05", steps=5)
    human_cost_usd = "2.00"  # a few minutes of someone's time; for ROI
    rate = Rate(calls_per_minute=120)


AGENT = Summariser
INPUTS = [
    "Summarise: Our Q3 support volume rose 18% to 42,000 tickets. Median first response fell from 9 to 4 hours "
    "after we added a triage queue. Refund requests stayed flat at 3.1% of orders.",
    "Summarise: The migration to the new billing system finished on 14 October. Two customers were double "
    "charged; both were refunded within a day. No other incidents were reported.",
]

if __name__ == "__main__":
    live = os.environ.get("OPENAI_API_KEY") and os.environ.get("ANTHROPIC_API_KEY")
    with Runtime(provider=None if live else ScriptedProvider()) as runtime:
        for text in INPUTS:
            outcome = runtime.run_sync(Summariser, text, tenant="acme", tags={"team": "support"})
            print(outcome.status.value, outcome.cost_usd, outcome.output, sep="\n", end="\n\n")
