"""A research agent on the deepest tier with a cap too small for one call: it stops before spending."""

from paymaster import Agent, Budget, Complexity


class DeepResearch(Agent):
    name = "deep-research"
    instructions = "Write a thorough, sourced research brief."
    complexity = Complexity.COMPLEX
    budget = Budget(usd="0.02", steps=3)  # one deep call can cost up to ~$0.06: refused up front


AGENT = DeepResearch
INPUTS = ["Research: how do usage-based pricing models for LLM APIs compare across vendors?"]
