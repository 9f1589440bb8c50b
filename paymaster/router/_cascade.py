"""Cascades: answer on a cheap tier, check the answer, escalate only when the check disagrees.

The same comparison decides in the offline replay (on recorded answers) and in
the runtime (on live answers), so a calibrated cascade does what it was
calibrated to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CHOICE = re.compile(r"^\W{0,3}(?:answer\s*(?:is)?\s*[:\-]?\s*)?\(?([A-Za-z])(?:$|[).:\]]|\s+\()", re.IGNORECASE)
_EDGE_PUNCT = ".,;:!?\"'`()[]{} \n\t"

STAGES = ("cascade stage 1: answer", "cascade stage 2: check", "cascade stage 3: escalated")
"""How each cascade stage's ledger note starts (after the routing reason): the check's answer is never the output."""


def answer_key(response: str) -> str:
    """What a cascade's check compares: a choice letter ("B", "(B)", "Answer: B."), else normalised text."""
    text = response.strip()
    match = _CHOICE.match(text)
    if match:
        return match.group(1).upper()
    return " ".join(text.split()).strip(_EDGE_PUNCT).casefold()


def agrees(answer: str, check: str) -> bool:
    """Whether two answers say the same thing (by ``answer_key``)."""
    return answer_key(answer) == answer_key(check)


@dataclass(frozen=True, slots=True)
class Cascade:
    """Answer on ``answer``; ``check`` answers too; when their answers differ, ``escalate`` answers.

    The names are models in recorded outcomes and tiers in the runtime.
    """

    answer: str
    check: str
    escalate: str

    @property
    def label(self) -> str:
        """How the cascade is named in reports."""
        return f"{self.answer} + {self.check} check -> {self.escalate}"
