"""Paymaster's semantic cache: exact hash, then guarded FAISS search, scoped per tenant.

Needs the `cache` extra (sentence-transformers, faiss-cpu, the bundled
all-MiniLM-L6-v2 weights); importing this package does not load any of them.
"""

from paymaster.cache._cache import DEFAULT_THRESHOLD, SemanticCache
from paymaster.cache._embed import SentenceTransformerEmbedder
from paymaster.cache._types import CacheHit, CacheScope, Embedder, Verdict, Verifier
from paymaster.cache._verify import DEFAULT_VERIFIER, RuleVerifier

__all__ = [
    "DEFAULT_THRESHOLD",
    "DEFAULT_VERIFIER",
    "CacheHit",
    "CacheScope",
    "Embedder",
    "RuleVerifier",
    "SemanticCache",
    "SentenceTransformerEmbedder",
    "Verdict",
    "Verifier",
]
