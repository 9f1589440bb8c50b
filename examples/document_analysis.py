"""A document-analysis agent with a plan fixed in Python: two cheap extraction passes run side by side,
then one moderate call writes the analysis from their results.

Run it alone with `python examples/document_analysis.py` (real APIs when keys are set, else offline).
"""

from __future__ import annotations

import os
import re

from paymaster import Agent, Budget, Complexity, ModelRequest, Plan, Rate, Runtime, ScriptedProvider, Subtask


class DocumentAnalyst(Agent):
    name = "document-analysis"
    instructions = "You analyse business documents precisely. Quote figures exactly as written."
    budget = Budget(usd="0.10", steps=6)
    human_cost_usd = "15.00"  # an analyst's quarter hour per document; for ROI
    rate = Rate(calls_per_minute=30)  # shared by every process on the ledger

    def make_plan(self, input: str) -> Plan:
        return Plan(subtasks=(
            Subtask(id="figures", goal=f"List every amount, date and party in this document:\n{input}",
                    complexity=Complexity.SIMPLE),
            Subtask(id="obligations", goal=f"List each obligation and its deadline in this document:\n{input}",
                    complexity=Complexity.SIMPLE),
            Subtask(id="analysis", goal="Write a five-line analysis: key terms, risks, and what to negotiate.",
                    complexity=Complexity.MODERATE, depends_on=("figures", "obligations")),
        ))

    def evaluate(self, output: str) -> bool:
        return "risk" in output.lower()


def REPLY(request: ModelRequest) -> str:
    """Offline stand-in for the model: extract with regular expressions, then write a short analysis."""
    prompt = request.messages[-1].content
    if prompt.startswith("List every amount"):
        found = re.findall(r"\$[\d,]+(?:\.\d+)?|\b\d{1,2} \w+ \d{4}\b", prompt)
        return "Figures: " + "; ".join(dict.fromkeys(found))
    if prompt.startswith("List each obligation"):
        duties = re.findall(r"[^.]*\b(?:shall|must)\b[^.]*\.", prompt)
        return "Obligations:\n" + "\n".join(f"- {d.strip()}" for d in duties)
    figures = re.search(r"Figures: (.*)", prompt)
    return (
        "Key terms: " + (figures.group(1) if figures else "none found") + ".\n"
        "Risk: the late-payment and termination clauses favour the supplier.\n"
        "Negotiate: a longer notice period and a cap on price increases."
    )


CONTRACT = (
    "Master services agreement between Acme Ltd and Globex plc, signed 3 March 2026. Globex shall pay "
    "$48,000 per year in quarterly instalments. Acme must deliver the quarterly report by 15 April 2026. "
    "Late payments accrue 2% a month. Either party may terminate with 30 days' notice."
)
AGENT = DocumentAnalyst
INPUTS = [CONTRACT]

if __name__ == "__main__":
    live = os.environ.get("OPENAI_API_KEY") and os.environ.get("ANTHROPIC_API_KEY")
    with Runtime(provider=None if live else ScriptedProvider(REPLY)) as runtime:
        outcome = runtime.run_sync(DocumentAnalyst, CONTRACT, tenant="acme", tags={"team": "legal"})
        print(outcome.status.value, outcome.cost_usd, outcome.output, sep="\n")
