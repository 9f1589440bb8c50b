"""Test doubles for the cache: a tiny deterministic embedder and a movable clock."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("faiss")

DIM = 64


class WordEmbedder:
    """Bag of words: each word has a fixed pseudo-random direction; texts sum them.

    Prompts that share most words land close together, which is all the scoping,
    TTL, eviction and restart tests need, without loading a model.
    """

    name = "test-bag-of-words"

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts: list[str]) -> Any:
        self.calls += 1
        rows = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
                rows[row] += np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
            rows[row] /= max(float(np.linalg.norm(rows[row])), 1e-12)
        return rows


class Clock:
    """Wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now
