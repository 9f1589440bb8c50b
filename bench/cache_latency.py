"""How long does a cache lookup take? p50/p99 at 10k and 100k entries, FAISS alone at 1M.

    python bench/cache_latency.py [DATA_DIR] [--no-million]

Entries are QQP questions (their embeddings come from bench/.cache, made by
bench/cache_quality.py, or are computed here); past the 72k real questions,
entries are real vectors plus a little noise. A lookup is timed end to end
(normalise, exact check, embedding with the real model, FAISS, verifier) for
questions that are not stored, so every lookup takes the full semantic path.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from cache_quality import DEFAULT_DATA, embeddings, load_pairs  # noqa: E402

from paymaster.cache import CacheScope, SemanticCache, SentenceTransformerEmbedder  # noqa: E402
from paymaster.cache._index import ScopeIndex  # noqa: E402

QUERIES = 300
SCOPE = CacheScope(tenant="bench", agent="qqp", agent_version="1", tier="t")


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(p50, p99) of fn's wall time in milliseconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def synthetic(base: Any, n: int, seed: int) -> Any:
    """n unit vectors: real ones plus a little noise (near-duplicates of real questions)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = base[rng.integers(0, len(base), n)] + rng.standard_normal((n, base.shape[1])).astype(np.float32) * 0.02
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


class _Table:
    """Precomputed vectors for stored prompts; the real model for anything else."""

    name = "all-MiniLM-L6-v2"

    def __init__(self, table: dict[str, Any], model: SentenceTransformerEmbedder) -> None:
        self.table = table
        self.model = model

    def encode(self, texts: list[str]) -> Any:
        import numpy as np

        if all(t in self.table for t in texts):
            return np.stack([self.table[t] for t in texts])
        return self.model.encode(texts)


def cache_at(size: int, texts: list[str], vectors: Any, queries: list[str], model: SentenceTransformerEmbedder) -> None:
    """Fill one scope with `size` entries, then time lookups of unstored questions."""
    table = dict(zip(texts[:size], vectors[:size], strict=True))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "latency.db"
        with SemanticCache(path, embedder=_Table(table, model), max_entries=size + 1, ttl_seconds=None) as cache:
            start = time.perf_counter()
            for text in texts[:size]:
                cache.store(SCOPE, text, "an answer", Decimal("0.01"))
            fill = time.perf_counter() - start
        # Reopen, as after a restart: the first lookup builds the scope's index.
        with SemanticCache(path, embedder=_Table(table, model), max_entries=size + 1, ttl_seconds=None) as cache:
            start = time.perf_counter()
            cache.lookup(SCOPE, queries[0])
            first = time.perf_counter() - start
            kind = next(iter(cache._scopes.values())).index.kind
            it = iter(queries[1:] * 2)
            p50, p99 = timed(lambda: cache.lookup(SCOPE, next(it)), QUERIES)
            scope_index = next(iter(cache._scopes.values())).index
            qv = model.encode(queries[1:QUERIES])
            jt = iter(range(QUERIES * 2))
            s50, s99 = timed(lambda: scope_index.search(qv[next(jt) % len(qv)], 4), QUERIES)
    print(
        f"| {size:,} entries ({kind}) | {p50:.1f} / {p99:.1f} ms | {s50:.2f} / {s99:.2f} ms "
        f"| {size / fill:,.0f} stores/s | {first:.1f} s |",
        flush=True,
    )


def _searcher(index: ScopeIndex, queries: Any) -> Callable[[], object]:
    it = iter(range(10**9))
    return lambda: index.search(queries[next(it) % len(queries)], 4)


def million(base: Any, queries: Any) -> None:
    """FAISS alone over 1M vectors: exact flat scan, and the IVF index the cache would use."""
    n = 1_000_000
    vectors = synthetic(base, n, seed=1)
    ids = list(range(n))
    for kind, threshold in (("flat", n + 1), ("ivf", 1)):
        start = time.perf_counter()
        index = ScopeIndex(vectors.shape[1], ids, vectors, ivf_min_entries=threshold)
        build = time.perf_counter() - start
        p50, p99 = timed(_searcher(index, queries), 100)
        print(f"| 1,000,000 vectors, FAISS {kind} | {p50:.2f} / {p99:.2f} ms | build {build:.1f} s |", flush=True)
        del index


def throughput(texts: list[str]) -> None:
    """Batched embedding throughput with one torch thread (the default) and with two."""
    sample = texts[:2048]
    for threads in (1, 2):
        model = SentenceTransformerEmbedder(batch_size=64, threads=threads)
        model.encode(sample[:64])
        start = time.perf_counter()
        model.encode(sample)
        print(f"| batch 64, {threads} torch thread(s) | {len(sample) / (time.perf_counter() - start):.0f} texts/s |")


def main() -> None:
    """Print the latency tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--no-million", action="store_true", help="skip the 1M-vector FAISS run")
    args = parser.parse_args()
    path = args.data / "qqp" / "qqp_pairs_dev.jsonl.gz"
    if not path.exists():
        print(f"skipped: {path} not found (pass the data directory as the first argument)")
        return
    try:
        import faiss  # noqa: F401
        import numpy as np
        import sentence_transformers  # noqa: F401
    except ImportError:
        print("skipped: needs the cache extra: pip install 'paymaster[cache]'")
        return

    pairs = load_pairs(path)
    all_texts = sorted({t for a, b, _, _ in pairs for t in (a, b)})
    table = embeddings(all_texts)
    # Stored: questions from the tune half; looked up: held-out questions never stored.
    stored = sorted({t for a, b, _, s in pairs if s == "tune" for t in (a, b)})
    held = sorted({t for a, b, _, s in pairs if s == "held-out" for t in (a, b)} - set(stored))
    queries = held[:: max(1, len(held) // (QUERIES + 1))][: QUERIES + 1]
    base = np.stack([table[t] for t in stored])
    extra = 100_000 - len(stored)
    texts = stored + [f"synthetic entry {i}" for i in range(extra)]
    vectors = np.concatenate([base, synthetic(base, extra, seed=0)])

    model = SentenceTransformerEmbedder()  # the cache's default: one torch thread
    model.encode(["warm up"])
    print("| scope size | lookup p50 / p99 (embed + search + verify) | FAISS search p50 / p99 | fill | first lookup |")
    print("|---|---|---|---|---|")
    for size in (10_000, 100_000):
        cache_at(size, texts, vectors, queries, model)
    e50, e99 = timed(lambda: model.encode([queries[1]]), 100)
    print(f"\nembedding one question alone: p50 / p99 = {e50:.1f} / {e99:.1f} ms")
    if not args.no_million:
        print("\n| index | search p50 / p99 | build |\n|---|---|---|")
        million(base, model.encode(queries[1:]))
    print("\n| batched embedding | throughput |\n|---|---|")
    throughput(all_texts)


if __name__ == "__main__":
    main()
