"""The false-hit guard rejects pairs that differ in what they ask."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from paymaster.cache import DEFAULT_VERIFIER, CacheScope, RuleVerifier, SemanticCache

if TYPE_CHECKING:
    from .helpers import Clock, WordEmbedder


REJECTED = [
    ("How do I learn deep learning in 1 month?", "How do I learn deep learning in 2 months?", "numbers"),
    ("Which is the best laptop under Rs 60,000?", "Which is the best laptop under Rs 40,000?", "numbers"),
    ("What are the best internships of 2017?", "What are the best internships of 2016?", "numbers"),
    ("How does the HP LaserJet M605x compare?", "How does the HP LaserJet M605n compare?", "numbers"),
    (
        "Can I get muscle mass with bodyweight exercises?",
        "Can I get muscle mass without bodyweight exercises?",
        "negated",
    ),
    ("Why do I dream?", "Why don't I dream?", "negated"),
    ("Is it safe to drink tap water?", "Is it not safe to drink tap water?", "negated"),
    ("What is the difference between C and C++?", "What is the difference between C and C#?", "symbols"),
    ("What does 画 mean?", "What does 几 mean?", "symbols"),
    ("How do I become a PHP programmer in Ahmedabad?", "How do I become a PHP programmer in Hyderabad?", "names"),
    ("What are the pros and cons of Uber in Ottawa?", "What are the pros and cons of Uber in Montreal?", "names"),
    ("Why is Fiji water expensive?", "Where is Fiji water expensive?", "question words"),
    ("Where can I buy used books online in India?", "Where can I sell used books online in India?", "opposite"),
    ("What are the benefits of using a DBMS?", "What are the disadvantages of using a DBMS?", "opposite"),
    ("How do I tune guitar strings?", "How do I tune piano keys?", "key terms"),
]

ACCEPTED = [
    ("How do I lose weight fast?", "How can I lose weight fast?"),
    ("What is the best way to learn Python?", "How do I learn Python?"),
    ("What's your New Year's resolution for 2017?", "What is your 2017 New Year's resolution?"),
    ("How can I improve my drawing skills?", "How do I improve my drawing skill?"),
    ("Why don't I dream?", "Why do I not dream?"),
]


@pytest.mark.parametrize(("query", "cached", "reason"), REJECTED)
def test_rejects_pairs_that_ask_something_else(query: str, cached: str, reason: str) -> None:
    for a, b in ((query, cached), (cached, query)):
        verdict = DEFAULT_VERIFIER.check(a, b, 0.99)
        assert not verdict.ok
        assert reason in verdict.reason


@pytest.mark.parametrize(("query", "cached"), ACCEPTED)
def test_accepts_rephrasings(query: str, cached: str) -> None:
    assert DEFAULT_VERIFIER.check(query, cached, 0.95).ok
    assert DEFAULT_VERIFIER.check(cached, query, 0.95).ok


def test_an_unmatched_term_needs_a_high_similarity() -> None:
    verifier = RuleVerifier(max_unmatched_terms=1, unmatched_min_similarity=0.94)
    query, cached = "How do I lose stubborn belly fat?", "How do I lose belly fat?"
    assert verifier.check(query, cached, 0.95).ok
    assert not verifier.check(query, cached, 0.93).ok
    assert not RuleVerifier(max_unmatched_terms=0).check(query, cached, 0.99).ok


def test_the_cache_does_not_serve_a_rejected_neighbour(
    path: Path, clock: Clock, embedder: WordEmbedder, scope: CacheScope
) -> None:
    a = "What is the refund policy for order 1234 in store 5?"
    b = "What is the refund policy for order 1234 in store 6?"
    with SemanticCache(path, embedder=embedder, clock=clock, threshold=0.5) as guarded:
        guarded.store(scope, a, "store five", Decimal("0.01"))
        assert guarded.lookup(scope, b) is None
    with SemanticCache(path, embedder=embedder, clock=clock, threshold=0.5, verifier=None) as plain:
        hit = plain.lookup(scope, b)  # plain cosine serves the wrong store's answer
    assert hit is not None and hit.output == "store five"


def test_a_later_neighbour_can_be_served_when_the_nearest_is_rejected(
    path: Path, clock: Clock, embedder: WordEmbedder, scope: CacheScope
) -> None:
    with SemanticCache(path, embedder=embedder, clock=clock, threshold=0.5) as cache:
        cache.store(scope, "refund policy for order 1234 in store 5 please", "five", Decimal("0.01"))
        cache.store(scope, "the refund policy for the order 1234 in store 6 please", "six", Decimal("0.01"))
        hit = cache.lookup(scope, "refund policy for order 1234 in store 6 please")
    assert hit is not None and hit.output == "six"
