"""The per-scope FAISS index: exact while small, HNSW once large, deletions honoured."""

from __future__ import annotations

from typing import Any

import pytest

from paymaster.cache._index import ScopeIndex

np = pytest.importorskip("numpy")
pytest.importorskip("faiss")


def _unit(rows: int, dim: int, seed: int) -> Any:
    vectors = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_flat_index_finds_the_nearest_and_forgets_removed_ids() -> None:
    vectors = _unit(100, 16, 0)
    index = ScopeIndex(16, list(range(1000, 1100)), vectors)
    assert index.kind == "flat" and len(index) == 100
    best_id, best_sim = index.search(vectors[7], 1)[0]
    assert best_id == 1007 and best_sim == pytest.approx(1.0, abs=1e-5)
    index.remove([1007])
    assert all(i != 1007 for i, _ in index.search(vectors[7], 5))
    assert len(index) == 99


def test_large_scopes_use_ivf_and_still_find_entries() -> None:
    vectors = _unit(2000, 16, 1)
    small = ScopeIndex(16, list(range(999)), vectors[:999], ivf_min_entries=1000)
    assert small.kind == "flat" and not small.needs_rebuild
    small.add([999], vectors[999:1000])
    assert small.needs_rebuild  # the cache rebuilds it as IVF on the next lookup
    index = ScopeIndex(16, list(range(2000)), vectors, ivf_min_entries=1000)
    assert index.kind == "ivf" and len(index) == 2000
    found = sum(index.search(vectors[i], 1)[0][0] == i for i in range(0, 2000, 20))
    assert found == 100  # each vector is its own nearest neighbour
    index.remove([20])
    assert all(i != 20 for i, _ in index.search(vectors[20], 5))
    assert len(index) == 1999
    index.add(list(range(2000, 9000)), _unit(7000, 16, 3))
    assert index.needs_rebuild  # grown past 4x the size its cells were trained on


def test_empty_index_returns_nothing() -> None:
    assert ScopeIndex(8).search(_unit(1, 8, 2)[0], 3) == []
