"""A research-report agent: the deep tier plans, cheap tiers gather, and only the write-up runs deep.

Run it alone with `python examples/research_report.py` (real APIs when keys are set, else offline).
"""

from __future__ import annotations

import json
import os

from paymaster import Agent, Budget, ModelRequest, Rate, Runtime, ScriptedProvider


class ResearchReport(Agent):
    name = "research-report"
    instructions = "You write short, well-structured research reports for busy engineering managers."
    planner = "llm"
    max_subtasks = 5
    budget = Budget(usd="0.25", steps=8)
    human_cost_usd = "40.00"  # an engineer's hour on a short report; for ROI
    rate = Rate(tokens_per_minute=200_000)  # counted at each call's worst case

    def evaluate(self, output: str) -> bool:
        return len(output.split()) >= 30


def REPLY(request: ModelRequest) -> str:
    """Offline stand-in for the model: a three-part plan, then plausible text for each part."""
    if request.json_schema is not None:
        topic = request.messages[-1].content
        return json.dumps({"subtasks": [
            {"id": "background", "goal": f"Summarise the background of: {topic}", "complexity": "simple",
             "depends_on": [], "expected_output": "a paragraph"},
            {"id": "options", "goal": f"Compare the main options for: {topic}", "complexity": "moderate",
             "depends_on": [], "expected_output": "a comparison"},
            {"id": "report", "goal": "Write the report with a recommendation.", "complexity": "complex",
             "depends_on": ["background", "options"], "expected_output": "the report"},
        ]})
    prompt = request.messages[-1].content
    if "Write the report" in prompt:
        return (
            "Report. Usage-based pricing charges per token, so cost follows prompt size and output length. "
            "Routing simple steps to a small model and caching repeats cut spend the most; hard caps stop "
            "runaway loops. Recommendation: cap every agent, route by difficulty, and review the ledger weekly."
        )
    if prompt.startswith("Compare"):
        return "Options: per-token APIs (elastic, unpredictable), reserved capacity (predictable, idle cost)."
    return "Background: LLM APIs bill input and output tokens separately, with discounts for cached input."


AGENT = ResearchReport
INPUTS = ["How should a platform team budget for LLM API usage across many agents?"]

if __name__ == "__main__":
    live = os.environ.get("OPENAI_API_KEY") and os.environ.get("ANTHROPIC_API_KEY")
    with Runtime(provider=None if live else ScriptedProvider(REPLY)) as runtime:
        outcome = runtime.run_sync(ResearchReport, INPUTS[0], tenant="acme", tags={"team": "platform"})
        print(outcome.status.value, outcome.cost_usd, outcome.output, sep="\n")
