"""Explicit invalidation: by agent version, tenant, key and entry."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from paymaster.cache import CacheScope, SemanticCache
from paymaster.errors import ConfigurationError

PROMPT = "How do I get a refund for order 1234?"
PARAPHRASE = "How can I get a refund for order 1234?"


def test_version_bump_invalidates_old_entries(cache: SemanticCache, scope: CacheScope) -> None:
    cache.store(scope, PROMPT, "v3 answer", Decimal("0.01"))
    bumped = replace(scope, agent_version="4")
    assert cache.lookup(bumped, PROMPT) is None  # a new version never sees the old answers
    cache.store(bumped, PROMPT, "v4 answer", Decimal("0.01"))
    assert cache.invalidate(agent=scope.agent, keep_version="4") == 1
    assert cache.lookup(scope, PROMPT) is None
    assert cache.lookup(scope, PARAPHRASE) is None
    hit = cache.lookup(bumped, PROMPT)
    assert hit is not None and hit.output == "v4 answer"


def test_invalidate_one_version(cache: SemanticCache, scope: CacheScope) -> None:
    cache.store(scope, PROMPT, "v3", Decimal("0.01"))
    cache.store(replace(scope, agent_version="2"), PROMPT, "v2", Decimal("0.01"))
    assert cache.invalidate(agent="refund", agent_version="2") == 1
    assert cache.lookup(scope, PROMPT) is not None


def test_invalidate_tenant_leaves_others(cache: SemanticCache, scope: CacheScope) -> None:
    other = replace(scope, tenant="globex")
    cache.store(scope, PROMPT, "acme", Decimal("0.01"))
    cache.store(other, PROMPT, "globex", Decimal("0.01"))
    assert cache.invalidate(tenant="acme") == 1
    assert cache.lookup(scope, PARAPHRASE) is None
    hit = cache.lookup(other, PARAPHRASE)
    assert hit is not None and hit.output == "globex"


def test_invalidate_by_key_and_by_entry(cache: SemanticCache, scope: CacheScope) -> None:
    cache.store(scope, PROMPT, "refund", Decimal("0.01"))
    cache.store(scope, "What is the refund policy for shoes?", "shoes", Decimal("0.01"))
    assert cache.invalidate(key=SemanticCache.key("How do I get a refund  for order 1234?")) == 1
    assert cache.lookup(scope, PARAPHRASE) is None
    hit = cache.lookup(scope, "What is the refund policy for shoes?")
    assert hit is not None
    assert cache.invalidate(entry_id=hit.entry_id) == 1
    assert len(cache) == 0


def test_invalidate_needs_a_filter(cache: SemanticCache) -> None:
    with pytest.raises(ConfigurationError):
        cache.invalidate()


def test_clear_drops_everything(cache: SemanticCache, scope: CacheScope) -> None:
    cache.store(scope, PROMPT, "refund", Decimal("0.01"))
    cache.store(replace(scope, tenant="globex"), PROMPT, "refund", Decimal("0.01"))
    assert cache.clear() == 2
    assert cache.lookup(scope, PROMPT) is None


def test_storing_the_same_prompt_replaces_the_answer(cache: SemanticCache, scope: CacheScope) -> None:
    cache.store(scope, PROMPT, "old", Decimal("0.01"))
    cache.store(scope, PROMPT, "new", Decimal("0.01"))
    assert len(cache) == 1
    for text in (PROMPT, PARAPHRASE):
        hit = cache.lookup(scope, text)
        assert hit is not None and hit.output == "new"
