"""TTL, cost-aware admission and eviction."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from paymaster.cache import CacheScope, SemanticCache

from .helpers import Clock, WordEmbedder

PROMPT = "How do I get a refund for order 1234?"
PARAPHRASE = "How can I get a refund for order 1234?"


def test_entries_expire_after_ttl(path: Path, clock: Clock, scope: CacheScope) -> None:
    with SemanticCache(path, embedder=WordEmbedder(), clock=clock, threshold=0.8, ttl_seconds=60) as cache:
        cache.store(scope, PROMPT, "fresh", Decimal("0.01"))
        clock.now += 59
        assert cache.lookup(scope, PROMPT) is not None
        assert cache.lookup(scope, PARAPHRASE) is not None
        clock.now += 2
        assert cache.lookup(scope, PROMPT) is None
        assert cache.lookup(scope, PARAPHRASE) is None
        cache.store(scope, "What is the refund policy for shoes?", "shoes", Decimal("0.01"))
        assert len(cache) == 1  # the expired entry was purged by the next store


def test_no_ttl_keeps_entries(path: Path, clock: Clock, scope: CacheScope) -> None:
    with SemanticCache(path, embedder=WordEmbedder(), clock=clock, ttl_seconds=None) as cache:
        cache.store(scope, PROMPT, "forever", Decimal("0.01"))
        clock.now += 10 * 365 * 24 * 3600
        assert cache.lookup(scope, PROMPT) is not None


def test_cheap_answers_are_not_admitted(path: Path, clock: Clock, scope: CacheScope) -> None:
    with SemanticCache(path, embedder=WordEmbedder(), clock=clock, min_cost_usd=Decimal("0.001")) as cache:
        assert cache.store(scope, PROMPT, "cheap", Decimal("0.0009")) is False
        assert cache.lookup(scope, PROMPT) is None
        assert cache.store(scope, PROMPT, "dear", Decimal("0.001")) is True
        assert cache.lookup(scope, PROMPT) is not None


def test_cost_must_be_a_non_negative_decimal(cache: SemanticCache, scope: CacheScope) -> None:
    with pytest.raises(TypeError):
        cache.store(scope, PROMPT, "x", 0.01)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        cache.store(scope, PROMPT, "x", Decimal("-0.01"))


def _cache(path: Path, clock: Clock, max_entries: int) -> SemanticCache:
    return SemanticCache(path, embedder=WordEmbedder(), clock=clock, max_entries=max_entries)


def test_eviction_drops_the_cheapest_first(path: Path, clock: Clock, scope: CacheScope) -> None:
    with _cache(path, clock, 3) as cache:
        for i, cost in enumerate(["0.05", "0.01", "0.03", "0.04"]):
            clock.now += 1
            cache.store(scope, f"question number {i}", f"answer {i}", Decimal(cost))
        assert len(cache) == 3
        assert cache.lookup(scope, "question number 1") is None
        for i in (0, 2, 3):
            assert cache.lookup(scope, f"question number {i}") is not None


def test_eviction_among_equals_drops_the_least_recently_used(path: Path, clock: Clock, scope: CacheScope) -> None:
    with _cache(path, clock, 3) as cache:
        for i in range(3):
            clock.now += 1
            cache.store(scope, f"question number {i}", f"answer {i}", Decimal("0.01"))
        clock.now += 1
        assert cache.lookup(scope, "question number 0") is not None  # 0 is now the most recent
        clock.now += 1
        cache.store(scope, "question number 3", "answer 3", Decimal("0.01"))
        assert cache.lookup(scope, "question number 1") is None
        assert cache.lookup(scope, "question number 0") is not None


def test_an_expensive_entry_that_is_never_used_ages_out(path: Path, clock: Clock, scope: CacheScope) -> None:
    # GreedyDual: each eviction raises the clock, so a stale expensive entry is
    # eventually outranked by cheaper entries that keep being stored.
    with _cache(path, clock, 2) as cache:
        cache.store(scope, "the expensive question", "dear", Decimal("0.10"))
        for i in range(30):
            clock.now += 1
            cache.store(scope, f"question number {i}", f"answer {i}", Decimal("0.01"))
        assert cache.lookup(scope, "the expensive question") is None


def test_evicted_entries_are_not_served_semantically(path: Path, clock: Clock, scope: CacheScope) -> None:
    with SemanticCache(path, embedder=WordEmbedder(), clock=clock, threshold=0.8, max_entries=1) as cache:
        cache.store(scope, PROMPT, "refund", Decimal("0.01"))
        assert cache.lookup(scope, PARAPHRASE) is not None
        cache.store(scope, "What is the refund policy for shoes?", "shoes", Decimal("0.02"))
        assert cache.lookup(scope, PARAPHRASE) is None
