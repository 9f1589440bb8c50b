"""A research agent on the deepest tier with a cap too small for one call: it stops before spending.

Run it alone with `python examples/deep_research.py` (real APIs when keys are set, else offline):
the task ends `budget_exceeded` at $0 and says which cap refused the call.
"""

import os

from paymaster import Agent, Budget, Complexity, Rate, Runtime, ScriptedProvider


class DeepResearch(Agent):
    name = "deep-research"
    instructions = "Write a thorough, sourced research brief."
    complexity = Complexity.COMPLEX
    budget = Budget(usd="0.02", steps=3)  # one deep call can cost up to ~$0.06: refused up front
    human_cost_usd = "60.00"  # a researcher's hour on a sourced brief; for ROI
    rate = Rate(usd_per_hour="2.00")  # spend pace across every task and process


AGENT = DeepResearch
INPUTS = ["Research: how do usage-based pricing models for LLM APIs compare across vendors?"]

if __name__ == "__main__":
    live = os.environ.get("OPENAI_API_KEY") and os.environ.get("ANTHROPIC_API_KEY")
    with Runtime(provider=None if live else ScriptedProvider()) as runtime:
        outcome = runtime.run_sync(DeepResearch, INPUTS[0], tenant="acme", tags={"team": "research"})
        print(outcome.status.value, outcome.cost_usd, outcome.stop_reason, sep="\n")
