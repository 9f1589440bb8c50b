"""Value objects and protocols shared by the cache modules."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


@dataclass(frozen=True)
class CacheScope:
    """Who an entry belongs to; a lookup only ever sees entries of its own scope."""

    tenant: str
    agent: str
    agent_version: str
    tier: str


@dataclass(frozen=True)
class CacheHit:
    """An answer served from the cache, with what producing it originally cost."""

    output: str
    cost_usd: Decimal
    kind: Literal["exact", "semantic"]
    similarity: float
    entry_id: str
    key: str
    cached_prompt: str


@dataclass(frozen=True)
class Verdict:
    """A verifier's decision on one (query, cached prompt) pair, with its reason."""

    ok: bool
    reason: str


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors, one row per text."""

    def encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Embed `texts`; rows must have unit length."""


class Verifier(Protocol):
    """Second opinion on a semantic candidate: does it really ask the same thing?"""

    def check(self, query: str, cached: str, similarity: float) -> Verdict:
        """Return whether the answer stored for `cached` may be served for `query`."""


_SPACE = re.compile(r"\s+")


def normalize_prompt(text: str) -> str:
    """Canonical form of a prompt: NFKC, whitespace collapsed, ends stripped.

    Case is kept on purpose: the exact tier must never merge prompts that a
    model could answer differently ("US" versus "us").
    """
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def prompt_key(text: str) -> str:
    """The exact-match key of a prompt: sha256 of its normalised form."""
    return hashlib.sha256(normalize_prompt(text).encode("utf-8")).hexdigest()
