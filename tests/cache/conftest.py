"""Fixtures for the cache tests.

Nothing here imports numpy or faiss at module level, so that the tests of what
happens without the `cache` extra still run when it is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from paymaster.cache import CacheScope, SemanticCache

if TYPE_CHECKING:
    from .helpers import Clock, WordEmbedder


@pytest.fixture
def embedder() -> WordEmbedder:
    from .helpers import WordEmbedder

    return WordEmbedder()


@pytest.fixture
def clock() -> Clock:
    from .helpers import Clock

    return Clock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "cache.db"


@pytest.fixture
def cache(path: Path, embedder: WordEmbedder, clock: Clock) -> Iterator[SemanticCache]:
    with SemanticCache(path, embedder=embedder, clock=clock, threshold=0.8) as c:
        yield c


@pytest.fixture
def scope() -> CacheScope:
    return CacheScope(tenant="acme", agent="refund", agent_version="3", tier="small")
