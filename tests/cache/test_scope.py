"""A lookup never returns another scope's entry, identical text included."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from paymaster.cache import CacheScope, SemanticCache

from .helpers import WordEmbedder

PROMPT = "How do I get a refund for order 1234?"
PARAPHRASE = "How can I get a refund for order 1234?"


def test_same_scope_hits_exactly_then_semantically(cache: SemanticCache, scope: CacheScope) -> None:
    assert cache.store(scope, PROMPT, "acme answer", Decimal("0.02"))
    exact = cache.lookup(scope, "  How do I get a refund   for order 1234?  ")
    assert exact is not None and exact.kind == "exact" and exact.output == "acme answer"
    near = cache.lookup(scope, PARAPHRASE)
    assert near is not None and near.kind == "semantic" and near.output == "acme answer"
    assert near.cost_usd == Decimal("0.02")


def test_identical_text_never_crosses_tenants(cache: SemanticCache, scope: CacheScope) -> None:
    cache.store(scope, PROMPT, "acme answer", Decimal("0.02"))
    other = replace(scope, tenant="globex")
    assert cache.lookup(other, PROMPT) is None
    assert cache.lookup(other, PARAPHRASE) is None


def test_every_part_of_the_scope_separates(cache: SemanticCache, scope: CacheScope) -> None:
    cache.store(scope, PROMPT, "acme answer", Decimal("0.02"))
    for field, value in (("tenant", "globex"), ("agent", "billing"), ("agent_version", "4"), ("tier", "large")):
        assert cache.lookup(replace(scope, **{field: value}), PROMPT) is None, field


def test_each_tenant_gets_its_own_answer(cache: SemanticCache, scope: CacheScope) -> None:
    tenants = [f"tenant-{i}" for i in range(20)]
    for tenant in tenants:
        cache.store(replace(scope, tenant=tenant), PROMPT, f"answer for {tenant}", Decimal("0.01"))
    for tenant in tenants:
        for text in (PROMPT, PARAPHRASE):
            hit = cache.lookup(replace(scope, tenant=tenant), text)
            assert hit is not None and hit.output == f"answer for {tenant}"


def test_scope_fields_are_not_concatenated(cache: SemanticCache) -> None:
    # ("a:b", "c") and ("a", "b:c") must stay two scopes.
    one = CacheScope(tenant="a:b", agent="c", agent_version="1", tier="t")
    two = CacheScope(tenant="a", agent="b:c", agent_version="1", tier="t")
    cache.store(one, PROMPT, "one", Decimal("0.01"))
    assert cache.lookup(two, PROMPT) is None


def test_lookup_in_an_unknown_scope_does_not_embed(cache: SemanticCache, embedder: WordEmbedder) -> None:
    before = embedder.calls
    assert cache.lookup(CacheScope("nobody", "x", "1", "t"), PROMPT) is None
    assert embedder.calls == before


def test_threads_sharing_one_cache_never_mix_tenants(cache: SemanticCache, scope: CacheScope) -> None:
    # The runtime calls the cache from worker threads (anyio.to_thread).
    from concurrent.futures import ThreadPoolExecutor

    def work(n: int) -> list[str]:
        mine = replace(scope, tenant=f"tenant-{n % 4}")
        cache.store(mine, PROMPT, f"answer for tenant-{n % 4}", Decimal("0.01"))
        hit = cache.lookup(mine, PARAPHRASE)
        return [] if hit is None else [hit.output]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(64)))
    for n, outputs in enumerate(results):
        assert outputs == [f"answer for tenant-{n % 4}"]  # stored just before, in this tenant
    assert len(cache) == 4
