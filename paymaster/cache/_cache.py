"""SemanticCache: exact hash, then FAISS neighbours checked by a verifier, all scoped."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from paymaster.cache._embed import SentenceTransformerEmbedder, require
from paymaster.cache._index import IVF_MIN_ENTRIES, ScopeIndex
from paymaster.cache._store import Entry, Store
from paymaster.cache._types import (
    CacheHit,
    CacheScope,
    Embedder,
    Verifier,
    normalize_prompt,
    prompt_key,
)
from paymaster.cache._verify import DEFAULT_VERIFIER
from paymaster.errors import ConfigurationError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

logger = logging.getLogger("paymaster.cache")

# Tuned on the tune half of the QQP dev pairs together with the default verifier
# (bench/cache_quality.py); see bench/README-cache.md for what it buys.
DEFAULT_THRESHOLD = 0.88
DEFAULT_TTL_SECONDS = 7 * 24 * 3600.0
DEFAULT_MAX_ENTRIES = 100_000
# How many nearest neighbours a lookup hands to the verifier: the closest one can
# be a near-miss ("... in 2016?" for "... in 2017?") while the next is the answer.
_CANDIDATES = 4
# Embeddings of the last prompts looked up, so that store() after a miss does not
# embed the same prompt a second time.
_RECENT = 256


class _Loaded:
    """A scope's in-memory index and the newest entry id it has seen."""

    def __init__(self, index: ScopeIndex) -> None:
        self.index = index
        self.watermark = 0


class SemanticCache:
    """A durable, tenant-scoped cache of model answers, guarded against false hits."""

    def __init__(
        self,
        path: str | Path,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        ttl_seconds: float | None = DEFAULT_TTL_SECONDS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        min_cost_usd: Decimal = Decimal(0),
        embedder: Embedder | None = None,
        verifier: Verifier | None = DEFAULT_VERIFIER,
        ivf_min_entries: int = IVF_MIN_ENTRIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Open (or create) the cache file at `path`.

        `verifier=None` serves any neighbour above `threshold` (plain cosine).
        `clock` returns wall-clock seconds; tests inject one to move time.
        """
        if not 0.0 < threshold <= 1.0:
            raise ConfigurationError(f"threshold must be in (0, 1], got {threshold}")
        if max_entries < 1:
            raise ConfigurationError(f"max_entries must be at least 1, got {max_entries}")
        if ttl_seconds is not None and ttl_seconds <= 0:
            raise ConfigurationError(f"ttl_seconds must be positive or None, got {ttl_seconds}")
        # Fail on a missing extra now, when the cache is built, not at the first lookup.
        self._np: Any = require("numpy")
        require("faiss")
        self.threshold = threshold
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self.min_cost_usd = min_cost_usd
        self._embedder: Embedder = embedder if embedder is not None else SentenceTransformerEmbedder()
        self._embedder_name = str(getattr(self._embedder, "name", type(self._embedder).__qualname__))
        self._verifier = verifier
        self._ivf_min_entries = ivf_min_entries
        self._clock = clock
        self._store = Store(path)
        self._lock = threading.RLock()
        self._scopes: dict[int, _Loaded] = {}
        self._recent: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()

    @staticmethod
    def key(prompt: str) -> str:
        """The exact-match key of a prompt (what `invalidate(key=...)` takes)."""
        return prompt_key(prompt)

    def lookup(self, scope: CacheScope, prompt: str) -> CacheHit | None:
        """An answer for `prompt` stored under exactly `scope`, or None."""
        text = normalize_prompt(prompt)
        key = prompt_key(text)
        with self._lock:
            scope_id = self._store.find_scope(scope)
            if scope_id is None:
                return None  # nothing was ever stored here: skip the embedding
            entry = self._store.exact(scope_id, key, self._clock())
            if entry is not None:
                return self._hit(entry, "exact", 1.0)
        vector = self._embed(text)
        with self._lock:
            loaded = self._index(scope_id)
            found = loaded.index.search(vector, _CANDIDATES)
            close = [(i, s) for i, s in found if s >= self.threshold]
            entries = self._store.entries(scope_id, [i for i, _ in close], self._clock())
        for entry_id, similarity in close:
            entry = entries.get(entry_id)
            if entry is None:
                continue  # expired or deleted by another process since the index saw it
            if self._verifier is not None:
                verdict = self._verifier.check(text, entry.prompt, similarity)
                if not verdict.ok:
                    logger.debug("cache candidate %s rejected: %s", entry_id, verdict.reason)
                    continue
            with self._lock:
                return self._hit(entry, "semantic", similarity)
        return None

    def store(self, scope: CacheScope, prompt: str, output: str, cost_usd: Decimal) -> bool:
        """Keep `output` as the answer to `prompt` in `scope`; False when not admitted."""
        if not isinstance(cost_usd, Decimal):
            raise TypeError(f"cost_usd must be a Decimal, got {type(cost_usd).__name__}")
        if cost_usd < 0:
            raise ValueError(f"cost_usd must not be negative, got {cost_usd}")
        if cost_usd < self.min_cost_usd:
            return False  # cheaper to ask again than to keep
        text = normalize_prompt(prompt)
        vector = self._embed(text)
        with self._lock:
            self._check_embeddings(vector.shape[0])
            now = self._clock()
            expires = None if self.ttl_seconds is None else now + self.ttl_seconds
            scope_id, _, replaced = self._store.insert(
                scope, prompt_key(text), text, output, cost_usd, vector.tobytes(), now, expires
            )
            self._forget(replaced)
            self._forget(self._store.evict(self.max_entries, now))
            if scope_id in self._scopes:
                self._refresh(self._scopes[scope_id], scope_id)
        return True

    def invalidate(
        self,
        *,
        tenant: str | None = None,
        agent: str | None = None,
        agent_version: str | None = None,
        key: str | None = None,
        tier: str | None = None,
        keep_version: str | None = None,
        entry_id: str | None = None,
    ) -> int:
        """Delete the entries matching every given filter; returns how many went.

        `keep_version` deletes every other version of the matching agents (call it
        after a version bump); `key` is `SemanticCache.key(prompt)` or `CacheHit.key`.
        """
        if all(v is None for v in (tenant, agent, agent_version, key, tier, keep_version, entry_id)):
            raise ConfigurationError("invalidate() needs at least one filter; use clear() to drop all")
        with self._lock:
            gone = self._store.delete(
                tenant=tenant,
                agent=agent,
                agent_version=agent_version,
                tier=tier,
                keep_version=keep_version,
                key=key,
                entry_id=None if entry_id is None else int(entry_id),
            )
            self._forget(gone)
        return len(gone)

    def clear(self) -> int:
        """Delete every entry of every scope; returns how many went."""
        with self._lock:
            gone = self._store.delete(
                tenant=None,
                agent=None,
                agent_version=None,
                tier=None,
                keep_version=None,
                key=None,
                entry_id=None,
            )
            self._scopes.clear()
        return len(gone)

    def __len__(self) -> int:
        """Number of stored entries (expired ones not yet purged included)."""
        with self._lock:
            return self._store.count()

    def close(self) -> None:
        """Release the file and the in-memory indexes."""
        with self._lock:
            self._scopes.clear()
            self._store.close()

    def __enter__(self) -> SemanticCache:
        """Use the cache in a with-block; it is closed at the end."""
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        """Close the cache."""
        self.close()

    # -- internals ----------------------------------------------------------------------

    def _hit(self, entry: Entry, kind: str, similarity: float) -> CacheHit:
        self._store.touch(entry.id, entry.cost_usd, self._clock())
        return CacheHit(
            output=entry.output,
            cost_usd=entry.cost_usd,
            kind="exact" if kind == "exact" else "semantic",
            similarity=similarity,
            entry_id=str(entry.id),
            key=entry.key,
            cached_prompt=entry.prompt,
        )

    def _embed(self, text: str) -> npt.NDArray[np.float32]:
        with self._lock:
            cached = self._recent.get(text)
            if cached is not None:
                self._recent.move_to_end(text)
                return cached
        numpy = self._np
        # Outside the lock: the model releases the GIL, so other threads keep going.
        rows = numpy.asarray(self._embedder.encode([text]), dtype=numpy.float32)
        vector: npt.NDArray[np.float32] = rows.reshape(-1)
        # The protocol promises unit vectors; normalising again costs nothing and
        # keeps inner product equal to cosine even for a careless embedder.
        vector = vector / max(float(numpy.linalg.norm(vector)), 1e-12)
        with self._lock:
            self._recent[text] = vector
            if len(self._recent) > _RECENT:
                self._recent.popitem(last=False)
        return vector

    def _index(self, scope_id: int) -> _Loaded:
        loaded = self._scopes.get(scope_id)
        if loaded is None or loaded.index.needs_rebuild:
            # Build from the store, the truth: after a restart, and when the scope has
            # outgrown its index (flat -> IVF, or IVF cells re-trained for the new size).
            dim = self._check_embeddings(None)
            rows = self._store.vectors_after(scope_id, 0)
            ids, vectors = [i for i, _ in rows], self._vectors(rows, dim)
            loaded = _Loaded(ScopeIndex(dim, ids, vectors, ivf_min_entries=self._ivf_min_entries))
            loaded.watermark = ids[-1] if ids else 0
            self._scopes[scope_id] = loaded
        self._refresh(loaded, scope_id)
        return loaded

    def _vectors(self, rows: list[tuple[int, bytes]], dim: int) -> npt.NDArray[np.float32]:
        numpy = self._np
        flat = numpy.frombuffer(b"".join(blob for _, blob in rows), dtype=numpy.float32)
        vectors: npt.NDArray[np.float32] = flat.reshape(len(rows), dim)
        return vectors

    def _refresh(self, loaded: _Loaded, scope_id: int) -> None:
        # Pick up entries written since we last looked, by this or any other process.
        rows = self._store.vectors_after(scope_id, loaded.watermark)
        if not rows:
            return
        loaded.index.add([i for i, _ in rows], self._vectors(rows, loaded.index.dim))
        loaded.watermark = rows[-1][0]

    def _forget(self, gone: list[tuple[int, int]]) -> None:
        by_scope: dict[int, list[int]] = {}
        for scope_id, entry_id in gone:
            by_scope.setdefault(scope_id, []).append(entry_id)
        for scope_id, ids in by_scope.items():
            loaded = self._scopes.get(scope_id)
            if loaded is not None:
                loaded.index.remove(ids)

    def _check_embeddings(self, dim: int | None) -> int:
        """Make the stored vectors match the current embedder; return their dimension."""
        stored_name = self._store.get_meta("embedder")
        stored_dim = self._store.get_meta("dim")
        if stored_name == self._embedder_name and stored_dim is not None:
            if dim is not None and dim != int(stored_dim):
                raise ConfigurationError(
                    f"embedder {self._embedder_name!r} returned {dim}-d vectors, the file holds {stored_dim}-d"
                )
            return int(stored_dim)
        # A new file, or one written with another model: its vectors mean nothing to
        # this embedder, so embed the stored prompts again (once).
        prompts = self._store.prompts()
        new_dim = dim
        for start in range(0, len(prompts), 256):
            batch = prompts[start : start + 256]
            vectors = self._np.asarray(self._embedder.encode([p for _, p in batch]), dtype=self._np.float32)
            new_dim = int(vectors.shape[1])
            self._store.set_embeddings([(i, v.tobytes()) for (i, _), v in zip(batch, vectors, strict=True)])
        if new_dim is None:
            new_dim = int(self._embed("dimension probe").shape[0])
        self._store.set_meta("embedder", self._embedder_name)
        self._store.set_meta("dim", str(new_dim))
        self._scopes.clear()
        return new_dim
