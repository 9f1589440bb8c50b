"""Small synthetic recorded datasets for the evals tests (seeded, so every run sees the same data)."""

from __future__ import annotations

import random
from decimal import Decimal

from paymaster.providers._replay import RecordedOutcome, RecordedPrompt

TIERS = ("small", "medium", "large")
# Cost per word in USD of each tier: large is 20x small, as frontier models are.
RATE = {"small": Decimal("0.000001"), "medium": Decimal("0.000005"), "large": Decimal("0.00002")}
WRONG = {"small": "C", "medium": "B", "large": "D"}  # wrong answers differ, so a check can catch them
EASY = ["weather", "today", "sunny", "rain", "city", "forecast", "cloud", "wind"]
HARD = ["prove", "theorem", "integral", "lemma", "derive", "bound", "matrix", "eigenvalue"]


def synthetic(n: int = 60, seed: int = 0) -> list[RecordedPrompt]:
    """Easy prompts (short, weather words): every tier is right. Hard ones (long, maths words): small is
    always wrong, medium right half the time, large always right."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        hard = i % 3 == 0
        words = rng.choices(HARD if hard else EASY, k=30 if hard else 6)
        prompt = f"q{i}: " + " ".join(words)
        right = {"small": not hard, "medium": (not hard) or bool(rng.random() < 0.5), "large": True}
        outcomes = {
            t: RecordedOutcome(
                response="A" if right[t] else WRONG[t],
                correct=right[t],
                cost_usd=RATE[t] * len(prompt.split()),
            )
            for t in TIERS
        }
        out.append(RecordedPrompt(id=f"q{i}", prompt=prompt, outcomes=outcomes,
                                  task_type="hard" if hard else "easy"))
    return out
