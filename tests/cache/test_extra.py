"""The cache's heavy dependencies load lazily and fail with a clear message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from paymaster.cache import SemanticCache, SentenceTransformerEmbedder
from paymaster.errors import MissingExtraError


def test_importing_the_cache_loads_no_heavy_module() -> None:
    code = (
        "import sys, paymaster, paymaster.cache; "
        "print(sorted(m for m in ('torch', 'faiss', 'sentence_transformers', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_faiss_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    with pytest.raises(MissingExtraError, match=r"paymaster\[cache\]"):
        SemanticCache(tmp_path / "c.db")


def test_missing_model_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("paymaster.cache._embed._MODEL_PACKAGES", (("no_such_model_package_xyz", "model"),))
    with pytest.raises(MissingExtraError, match=r"paymaster\[cache\]"):
        SentenceTransformerEmbedder().encode(["hello"])


def test_public_names_are_pinned() -> None:
    import paymaster.cache as cache

    assert sorted(cache.__all__) == sorted(
        [
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
    )
