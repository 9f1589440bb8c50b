"""Reply lengths as agents really use them, to size ``max_tokens`` (and so each hold) by what replies need.

A hold is a call's worst case, and most of it is usually ``max_tokens`` times
the output price; replies rarely come near a tier's maximum. For an agent with
``max_tokens = "auto"``, each call asks for the 99th percentile of that
agent's recent replies (per kind of call and tier) times 1.5, within the tier's
maximum. The provider enforces ``max_tokens``, so the hold stays a true bound;
a reply cut at the lower limit is asked again with the tier's maximum.
"""

from __future__ import annotations

import math
from collections import deque

from ..ledger import Ledger

MIN_SAMPLES = 20  # below this many observed replies, use the tier's maximum
WINDOW = 1000  # the most recent replies that count
HEADROOM = 1.5
FLOOR = 16  # never ask for fewer output tokens than this

Key = tuple[str, str, str]  # agent, kind of call, tier


class ReplyLengths:
    """Observed reply lengths per (agent, kind, tier), seeded from the ledger on first use."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._seen: dict[Key, deque[int]] = {}
        self._limits: dict[Key, tuple[int, int]] = {}  # key -> (observations when computed, limit)

    def observe(self, key: Key, output_tokens: int) -> None:
        """Count one reply's length (only for keys already in use)."""
        seen = self._seen.get(key)
        if seen is not None:
            seen.append(output_tokens)

    async def limit(self, key: Key, tier_max: int) -> int | None:
        """The ``max_tokens`` to ask for, or None when there is too little history (use ``tier_max``)."""
        seen = self._seen.get(key)
        if seen is None:
            seen = self._seen[key] = deque(await self._history(key), maxlen=WINDOW)
        if len(seen) < MIN_SAMPLES:
            return None
        cached = self._limits.get(key)
        if cached is None or len(seen) >= cached[0] + 50 or (len(seen) == WINDOW and cached[0] != len(seen)):
            ordered = sorted(seen)
            p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
            cached = (len(seen), max(FLOOR, math.ceil(p99 * HEADROOM)))
            self._limits[key] = cached
        return cached[1] if cached[1] < tier_max else None

    async def _history(self, key: Key) -> list[int]:
        agent, kind, tier = key
        sql = (
            "SELECT s.output_tokens FROM steps s JOIN tasks t ON t.id = s.task_id"
            " WHERE t.agent = :agent AND s.kind = :kind AND s.tier = :tier AND s.status = 'ok'"
            " ORDER BY s.id DESC LIMIT :n"
        )
        params = {"agent": agent, "kind": kind, "tier": tier, "n": WINDOW}
        rows = await self._ledger.sql.run(lambda tx: list(tx.execute(sql, params).fetchall()))
        return [int(r[0]) for r in reversed(rows)]
