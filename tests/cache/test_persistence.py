"""The cache survives restarts and sees what other processes write to the same file."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from paymaster.cache import CacheScope, SemanticCache

from .helpers import Clock, WordEmbedder

PROMPT = "How do I get a refund for order 1234?"
PARAPHRASE = "How can I get a refund for order 1234?"


def _open(path: Path, clock: Clock) -> SemanticCache:
    return SemanticCache(path, embedder=WordEmbedder(), clock=clock, threshold=0.8)


def test_restart_keeps_entries(path: Path, clock: Clock, scope: CacheScope) -> None:
    with _open(path, clock) as first:
        first.store(scope, PROMPT, "kept", Decimal("0.000123456789"))
    with _open(path, clock) as second:
        exact = second.lookup(scope, PROMPT)
        near = second.lookup(scope, PARAPHRASE)
    assert exact is not None and exact.output == "kept" and exact.cost_usd == Decimal("0.000123456789")
    assert near is not None and near.kind == "semantic" and near.output == "kept"


def test_entries_written_by_another_instance_are_found(path: Path, clock: Clock, scope: CacheScope) -> None:
    with _open(path, clock) as reader, _open(path, clock) as writer:
        writer.store(scope, "What is the refund policy for shoes?", "shoes", Decimal("0.01"))
        assert reader.lookup(scope, "What is the refund policy for shoes?") is not None  # loads the index
        writer.store(scope, PROMPT, "refund", Decimal("0.01"))
        hit = reader.lookup(scope, PARAPHRASE)
    assert hit is not None and hit.output == "refund"


def test_deletion_by_another_instance_is_respected(path: Path, clock: Clock, scope: CacheScope) -> None:
    with _open(path, clock) as reader, _open(path, clock) as writer:
        writer.store(scope, PROMPT, "refund", Decimal("0.01"))
        assert reader.lookup(scope, PARAPHRASE) is not None
        assert writer.invalidate(tenant=scope.tenant) == 1
        assert reader.lookup(scope, PARAPHRASE) is None
        assert reader.lookup(scope, PROMPT) is None


def test_changing_the_embedder_re_embeds_stored_prompts(path: Path, clock: Clock, scope: CacheScope) -> None:
    with _open(path, clock) as first:
        first.store(scope, PROMPT, "refund", Decimal("0.01"))

    class Renamed(WordEmbedder):
        name = "another-model"

    with SemanticCache(path, embedder=Renamed(), clock=clock, threshold=0.8) as second:
        hit = second.lookup(scope, PARAPHRASE)
    assert hit is not None and hit.output == "refund"


def test_a_large_scope_is_rebuilt_as_ivf_and_keeps_serving(path: Path, clock: Clock, scope: CacheScope) -> None:
    with SemanticCache(path, embedder=WordEmbedder(), clock=clock, threshold=0.8, ivf_min_entries=300) as cache:
        for i in range(299):
            cache.store(scope, f"filler question about topic {i} and item {i * 7}", "filler", Decimal("0.01"))
        cache.store(scope, PROMPT, "refund", Decimal("0.01"))
        hit = cache.lookup(scope, PARAPHRASE)  # this lookup rebuilds the scope's index as IVF
        assert hit is not None and hit.output == "refund"
        assert cache._scopes[hit_scope(cache, scope)].index.kind == "ivf"


def hit_scope(cache: SemanticCache, scope: CacheScope) -> int:
    scope_id = cache._store.find_scope(scope)
    assert scope_id is not None
    return scope_id
