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

import anyio

from ..ledger import Ledger
from ..ledger._reader import Reader

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
        self._count: dict[Key, int] = {}  # replies counted so far; the window keeps the last WINDOW of them
        self._limits: dict[Key, tuple[int, int]] = {}  # key -> (count when computed, limit)
        self._loading: dict[Key, anyio.Lock] = {}

    def observe(self, key: Key, output_tokens: int) -> None:
        """Count one reply's length (only for keys already in use)."""
        seen = self._seen.get(key)
        if seen is not None:
            seen.append(output_tokens)
            self._count[key] += 1

    async def limit(self, key: Key, tier_max: int) -> int | None:
        """The ``max_tokens`` to ask for, or None when there is too little history (use ``tier_max``)."""
        seen = self._seen.get(key)
        if seen is None:
            # A thousand tasks starting at once all find no history yet: one of them reads it, the rest wait.
            loading = self._loading.setdefault(key, anyio.Lock())
            try:
                async with loading:
                    seen = self._seen.get(key)
                    if seen is None:
                        history = await self._history(key)
                        seen = self._seen[key] = deque(history, maxlen=WINDOW)
                        self._count[key] = len(history)
            finally:
                if self._loading.get(key) is loading:  # done with (a run_sync loop may not outlive it)
                    del self._loading[key]
        if len(seen) < MIN_SAMPLES:
            return None
        count = self._count[key]
        cached = self._limits.get(key)
        if cached is None or count >= cached[0] + 50:  # by replies counted: a full window keeps moving
            ordered = sorted(seen)
            p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
            cached = (count, max(FLOOR, math.ceil(p99 * HEADROOM)))
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
        def read() -> list[tuple[int]]:
            with Reader(self._ledger) as reader:
                return reader.rows(sql, params)

        # A read beside the writer, in a worker thread: never queued behind the ledger's writes.
        rows = await anyio.to_thread.run_sync(read)
        return [int(r[0]) for r in reversed(rows)]
