"""One FAISS index per scope: exact (flat) while small, IVF once it grows large.

The index only speeds up finding candidates; the SQLite store stays the
truth. A candidate the index returns is always re-read from the store, so an
id that was deleted elsewhere can at worst cost a wasted comparison.

Why IVF and not HNSW: an index is rebuilt from the store after every restart,
and on this 2-core machine HNSW took 25-45 s to build over 100k vectors, IVF
2-6 s, both then searching in under a millisecond. A hit needs cosine >= 0.88,
and such near neighbours fall in the query's cell or one of the probed ones.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from paymaster.cache._embed import require

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# A flat scan reads every vector: 1.5-4 ms per 10k on this 2-core machine, so
# past 20k it would cost more than the embedding itself.
IVF_MIN_ENTRIES = 20_000
# Rebuild (re-train the cells) once a scope has grown this many times past the
# size its cells were trained on, so cells stay about sqrt(n) entries each.
_REGROW = 4
_PROBE_FRACTION = 16  # search 1/16 of the cells, at least 8


class ScopeIndex:
    """Inner-product search over one scope's unit vectors, keyed by entry id."""

    def __init__(
        self,
        dim: int,
        ids: list[int] | None = None,
        vectors: npt.NDArray[np.float32] | None = None,
        *,
        ivf_min_entries: int = IVF_MIN_ENTRIES,
    ) -> None:
        """Build over the given vectors: flat below `ivf_min_entries`, IVF at or above."""
        self._faiss = require("faiss")
        self._np = require("numpy")
        self.dim = dim
        self._ivf_min_entries = ivf_min_entries
        ids = ids or []
        self._trained_at = len(ids)
        if len(ids) >= ivf_min_entries:
            self._index = self._ivf(len(ids), vectors)
            self.kind = "ivf"
        else:
            self._index = self._faiss.IndexIDMap2(self._faiss.IndexFlatIP(dim))
            self.kind = "flat"
        self.add(ids, vectors)

    def __len__(self) -> int:
        """Number of vectors held."""
        return int(self._index.ntotal)

    @property
    def needs_rebuild(self) -> bool:
        """True when the scope has outgrown this index (flat too big, IVF cells too full)."""
        n = len(self)
        if self.kind == "flat":
            return n >= self._ivf_min_entries
        return n >= _REGROW * max(self._trained_at, 1)

    def add(self, ids: list[int], vectors: npt.NDArray[np.float32] | None) -> None:
        """Add vectors under the given entry ids."""
        if not ids or vectors is None:
            return
        numpy = self._np
        vecs = numpy.ascontiguousarray(vectors, dtype=numpy.float32).reshape(len(ids), self.dim)
        self._index.add_with_ids(vecs, numpy.asarray(ids, dtype=numpy.int64))

    def remove(self, ids: list[int]) -> None:
        """Forget entry ids (a no-op for ids never added)."""
        if ids:
            numpy = self._np
            self._index.remove_ids(numpy.asarray(ids, dtype=numpy.int64))

    def search(self, vector: npt.NDArray[np.float32], k: int) -> list[tuple[int, float]]:
        """The k nearest entries as (id, cosine similarity), best first."""
        if len(self) == 0:
            return []
        numpy = self._np
        query = numpy.ascontiguousarray(vector, dtype=numpy.float32).reshape(1, self.dim)
        sims, ids = self._index.search(query, min(k, len(self)))
        return [(int(i), float(s)) for i, s in zip(ids[0], sims[0], strict=True) if i >= 0]

    def _ivf(self, n: int, vectors: Any) -> Any:
        faiss = self._faiss
        numpy = self._np
        # About 2 sqrt(n) cells (k-means time grows with cells x points, and this runs
        # on the first lookup after a restart), but at least 40 training points per cell.
        cells = max(1, min(int(2 * math.sqrt(n)), n // 40))
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, cells, faiss.METRIC_INNER_PRODUCT)
        data = numpy.ascontiguousarray(vectors, dtype=numpy.float32).reshape(n, self.dim)
        sample = numpy.random.default_rng(0).choice(n, size=min(n, 40 * cells), replace=False)
        index.train(data[sample])
        index.nprobe = max(8, cells // _PROBE_FRACTION)
        # The quantizer must outlive this frame: faiss keeps only a raw pointer.
        self._quantizer = quantizer
        return index
