"""The learned scorer: k nearest recorded prompts, by embedding, predict each tier's accuracy and cost.

Few-shot prompts share long boilerplate (instructions, worked examples), which
would make every prompt of a task look alike to an embedding model that reads
only the first few hundred tokens. The index therefore learns, from its
training prompts, which blank-line-separated blocks are boilerplate (they
recur in many prompts) and embeds only the rest of each prompt.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigurationError
from ._deps import require_numpy
from ._score import KnnScorerSpec, Score

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Matrix = npt.NDArray[np.float32]

_BLOCKS = re.compile(r"\n\s*\n")
_WORDS = re.compile(r"[a-z0-9]+")
_EPS = 1e-6


class Embedder(Protocol):
    """Turns texts into unit-length float32 rows."""

    name: str

    def encode(self, texts: list[str]) -> Matrix:
        """Embed ``texts``."""


class HashingEmbedder:
    """Words and word pairs hashed into a fixed number of signed buckets: no model, numpy only, deterministic."""

    def __init__(self, dim: int = 1024) -> None:
        if dim < 8:
            raise ConfigurationError(f"the hashing embedder needs at least 8 dimensions, got {dim}")
        self.dim = dim
        self.name = f"hashing-{dim}"

    def encode(self, texts: list[str]) -> Matrix:
        """Embed ``texts`` as log-scaled signed feature counts, normalised to unit length."""
        np = require_numpy()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _WORDS.findall(text.lower())
            for feature in [*words, *(f"{a} {b}" for a, b in pairwise(words))]:
                h = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
                out[row, h % self.dim] += 1.0 if h >> 63 else -1.0
        out = np.sign(out) * np.log1p(np.abs(out))
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        result: Matrix = (out / np.maximum(norms, _EPS)).astype(np.float32)
        return result


def make_embedder(name: str) -> Embedder:
    """The embedder a thresholds file names: ``hashing-DIM`` or ``all-MiniLM-L6-v2`` (the cache extra)."""
    if name.startswith("hashing-") and name[8:].isdigit():
        return HashingEmbedder(int(name[8:]))
    from ..cache._embed import MODEL_NAME, SentenceTransformerEmbedder

    if name == MODEL_NAME:
        embedder: Embedder = SentenceTransformerEmbedder()
        return embedder
    raise ConfigurationError(f"unknown embedder {name!r}; use 'hashing-1024' or {MODEL_NAME!r}")


def _block_id(block: str) -> str:
    return hashlib.sha256(" ".join(block.split()).encode()).hexdigest()[:16]


def learn_boilerplate(texts: Sequence[str], *, min_share: float = 0.02, min_count: int = 3) -> tuple[str, ...]:
    """Ids of blocks that recur in at least ``min_share`` of ``texts`` (and ``min_count`` of them)."""
    counts = Counter(b for t in texts for b in {_block_id(x) for x in _BLOCKS.split(t) if x.strip()})
    floor = max(min_count, min_share * len(texts))
    return tuple(sorted(b for b, n in counts.items() if n >= floor))


def focus(text: str, boilerplate: frozenset[str]) -> str:
    """``text`` without its boilerplate blocks (the whole text if nothing else is left)."""
    kept = [b.strip() for b in _BLOCKS.split(text) if b.strip() and _block_id(b) not in boilerplate]
    return "\n\n".join(kept) if kept else text.strip()


@dataclass(frozen=True)
class KnnIndex:
    """Training prompts' embeddings with each tier's recorded correctness and cost (relative to the deepest)."""

    tiers: tuple[str, ...]
    embeddings: Matrix
    correct: Matrix
    relative_cost: Matrix
    boilerplate: tuple[str, ...]

    def digest(self) -> str:
        """SHA-256 of the index's content (not of the file, whose zip headers carry timestamps)."""
        h = hashlib.sha256()
        h.update("\n".join([*self.tiers, "--", *self.boilerplate]).encode())
        for array in (self.embeddings, self.correct, self.relative_cost):
            h.update(str(array.shape).encode())
            h.update(array.tobytes())
        return h.hexdigest()

    def save(self, path: str | Path) -> str:
        """Write the index as a .npz file (no pickles); return its digest."""
        np = require_numpy()
        with Path(path).open("wb") as f:
            np.savez(
                f, tiers=np.array(self.tiers), embeddings=self.embeddings, correct=self.correct,
                relative_cost=self.relative_cost, boilerplate=np.array(self.boilerplate, dtype="U16"),
            )
        return self.digest()

    @classmethod
    def load(cls, path: str | Path) -> KnnIndex:
        """Read an index written by ``save``."""
        np = require_numpy()
        p = Path(path)
        try:
            # Opened here, not by numpy, so that a corrupt file is still closed.
            with p.open("rb") as f, np.load(f, allow_pickle=False) as data:
                return cls(
                    tiers=tuple(str(t) for t in data["tiers"]),
                    embeddings=data["embeddings"].astype(np.float32),
                    correct=data["correct"].astype(np.float32),
                    relative_cost=data["relative_cost"].astype(np.float32),
                    boilerplate=tuple(str(b) for b in data["boilerplate"]),
                )
        except FileNotFoundError:
            raise ConfigurationError(f"kNN index {p} does not exist; calibration writes it next to the thresholds") \
                from None
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ConfigurationError(f"kNN index {p} is unreadable: {exc}") from None


def neighbours(queries: Matrix, base: Matrix, k: int, *, exclude_self: bool = False) -> Any:
    """Indices of each query's k most similar base rows (cosine); ties go to the lower index."""
    np = require_numpy()
    sims = queries @ base.T
    if exclude_self:  # leave-one-out on the training set: a prompt may not vote for itself
        np.fill_diagonal(sims, -np.inf)
    k = min(k, base.shape[0] - (1 if exclude_self else 0))
    # A stable sort of the negated similarities keeps the choice deterministic under ties.
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def predict(index: KnnIndex, nbrs: Any, prior_weight: float) -> tuple[Matrix, Matrix]:
    """Per-tier predicted accuracy (shrunk toward each tier's overall accuracy) and relative cost."""
    np = require_numpy()
    k = nbrs.shape[1]
    prior = index.correct.mean(axis=0)
    accuracy = (index.correct[nbrs].sum(axis=1) + prior_weight * prior) / (k + prior_weight)
    cost = index.relative_cost[nbrs].mean(axis=1)
    return accuracy.astype(np.float32), cost.astype(np.float32)


def escalation_scores(accuracy: Matrix, cost: Matrix) -> Matrix:
    """At each boundary i: the best (accuracy gain / extra cost) of any tier deeper than i.

    A deeper tier predicted both better and no dearer scores as a large number, so it always wins.
    """
    np = require_numpy()
    n, tiers = accuracy.shape
    out: Matrix = np.full((n, max(tiers - 1, 0)), -np.inf, dtype=np.float32)
    for i in range(tiers - 1):
        gain = accuracy[:, i + 1:] - accuracy[:, i:i + 1]
        extra = np.maximum(cost[:, i + 1:] - cost[:, i:i + 1], _EPS)
        out[:, i] = (gain / extra).max(axis=1)
    return out


def score_embeddings(index: KnnIndex, vectors: Matrix, k: int, prior_weight: float) -> tuple[Matrix, Matrix]:
    """Escalation scores and predicted per-tier accuracy of new prompts, given their (focused) embeddings."""
    accuracy, cost = predict(index, neighbours(vectors, index.embeddings, k), prior_weight)
    return escalation_scores(accuracy, cost), accuracy


class KnnScorer:
    """Scores a prompt from its k nearest training prompts in a KnnIndex."""

    def __init__(self, index: KnnIndex, spec: KnnScorerSpec, embedder: Embedder) -> None:
        self.index = index
        self.spec = spec
        self.embedder = embedder
        self._boilerplate = frozenset(index.boilerplate)

    @classmethod
    def from_spec(
        cls, spec: KnnScorerSpec, base_dir: Path, tiers: Sequence[str], *, embedder: Embedder | None = None
    ) -> KnnScorer:
        """Load the index a thresholds file points to, checking it is the one calibration wrote."""
        index = KnnIndex.load(base_dir / spec.index)
        if index.digest() != spec.index_sha256:
            raise ConfigurationError(
                f"kNN index {base_dir / spec.index} does not match its thresholds file (sha256 differs); "
                "re-run calibration"
            )
        if tuple(tiers) != index.tiers:
            raise ConfigurationError(f"kNN index tiers {list(index.tiers)} differ from the thresholds' {list(tiers)}")
        chosen = embedder or make_embedder(spec.embedder)
        if chosen.name != spec.embedder:
            raise ConfigurationError(f"the index was built with embedder {spec.embedder!r}, not {chosen.name!r}")
        return cls(index, spec, chosen)

    def score_many(self, texts: list[str]) -> tuple[Matrix, Matrix, Matrix]:
        """Escalation scores, predicted accuracy and relative cost for many texts at once."""
        vectors = self.embedder.encode([focus(t, self._boilerplate) for t in texts])
        accuracy, cost = predict(self.index, neighbours(vectors, self.index.embeddings, self.spec.k),
                                 self.spec.prior_weight)
        return escalation_scores(accuracy, cost), accuracy, cost

    def score(self, text: str) -> Score:
        """Escalation scores of one text, explained by the first tier's predicted accuracy."""
        scores, accuracy, _ = self.score_many([text])
        n = len(self.index.embeddings)
        detail = (
            f"knn k={min(self.spec.k, n)} of {n} recorded prompts ({self.spec.embedder}): "
            f"p({self.index.tiers[0]})={float(accuracy[0, 0]):.2f}, "
            f"p({self.index.tiers[-1]})={float(accuracy[0, -1]):.2f}"
        )
        return Score(tuple(float(v) for v in scores[0]), detail)
