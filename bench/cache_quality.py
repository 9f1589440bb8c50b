"""How often does the semantic cache serve a wrong answer? Precision and recall on QQP.

Each labelled pair (a, b) of the QQP dev file is one cache decision: a was
stored, b is looked up; would the cache serve a's answer? Precision is the
share of those hits that are true duplicates, recall the share of duplicates
that hit. The dev file is split in two by a hash of each pair: the verifier was
tuned on "tune" only; "held-out" was not looked at while tuning.

    python bench/cache_quality.py [DATA_DIR] [--replay N]

DATA_DIR defaults to ../shared/data next to the repository. Embeddings of the
file are kept in bench/.cache/ (untracked) after the first run (about 5
minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from paymaster.cache import (  # noqa: E402
    DEFAULT_THRESHOLD,
    DEFAULT_VERIFIER,
    CacheScope,
    SemanticCache,
    SentenceTransformerEmbedder,
)
from paymaster.cache._types import normalize_prompt  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data"
CACHE_DIR = REPO / "bench" / ".cache"


def load_pairs(path: Path) -> list[tuple[str, str, bool, str]]:
    """(a, b, duplicate, split) for every pair; split is 'tune' or 'held-out'."""
    pairs = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            digest = hashlib.sha256((row["a"] + "\x00" + row["b"]).encode()).hexdigest()
            split = "tune" if int(digest[:8], 16) % 2 == 0 else "held-out"
            pairs.append((normalize_prompt(row["a"]), normalize_prompt(row["b"]), bool(row["duplicate"]), split))
    return pairs


def embeddings(texts: list[str], name: str = "qqp_dev") -> dict[str, Any]:
    """Text -> unit vector, from bench/.cache when the same texts were embedded before."""
    import numpy as np

    cached = CACHE_DIR / f"{name}_all-MiniLM-L6-v2.npz"
    if cached.exists():
        data = np.load(cached, allow_pickle=True)
        if list(data["texts"]) == texts:
            return dict(zip(texts, data["emb"], strict=True))
    print(f"embedding {len(texts)} texts (cached afterwards in {cached}) ...", flush=True)
    start = time.perf_counter()
    vectors = SentenceTransformerEmbedder(batch_size=128, threads=None).encode(texts)
    print(f"  {len(texts) / (time.perf_counter() - start):.0f} texts/s", flush=True)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(cached, texts=np.array(texts, dtype=object), emb=vectors)
    return dict(zip(texts, vectors, strict=True))


def shipped_hit(a: str, b: str, similarity: float) -> bool:
    """The cache's own decision: exact text, or close enough and passed by the verifier."""
    if a == b:
        return True
    return similarity >= DEFAULT_THRESHOLD and DEFAULT_VERIFIER.check(b, a, similarity).ok


def score(hits: list[bool], pairs: list[tuple[str, str, bool, str]], split: str | None) -> tuple[float, float, int]:
    """(precision, recall, number of hits) of a decision over one split (None: all)."""
    tp = fp = positives = 0
    for hit, (_, _, duplicate, s) in zip(hits, pairs, strict=True):
        if split is not None and s != split:
            continue
        positives += duplicate
        tp += hit and duplicate
        fp += hit and not duplicate
    return (tp / (tp + fp) if tp + fp else float("nan")), tp / positives, tp + fp


def _loose(text: str) -> str:
    return re.sub(r"\s+([?.!,])", r"\1", text).casefold()


class _Lookup:
    """An embedder that returns the precomputed vectors (for the replay check)."""

    name = "all-MiniLM-L6-v2"

    def __init__(self, table: dict[str, Any]) -> None:
        self.table = table

    def encode(self, texts: list[str]) -> Any:
        import numpy as np

        return np.stack([self.table[t] for t in texts])


def replay(pairs: list[tuple[str, str, bool, str]], table: dict[str, Any], expected: list[bool], n: int) -> None:
    """Run n pairs through a real SemanticCache and check it decides as computed here."""
    step = max(1, len(pairs) // n)
    chosen = list(range(0, len(pairs), step))[:n]
    agree = 0
    with tempfile.TemporaryDirectory() as tmp, SemanticCache(Path(tmp) / "replay.db", embedder=_Lookup(table)) as cache:
        for i in chosen:
            a, b, _, _ = pairs[i]
            scope = CacheScope(tenant=f"pair-{i}", agent="qqp", agent_version="1", tier="t")
            cache.store(scope, a, "answer", Decimal("0.01"))
            agree += (cache.lookup(scope, b) is not None) == expected[i]
    print(f"\nreplay through SemanticCache: {agree}/{len(chosen)} decisions identical")
    if agree != len(chosen):
        raise SystemExit("the cache and this benchmark disagree")


def counterfactuals(path: Path) -> None:
    """GPTCache's paraphrase pairs should hit; the same sentence with a number or a negation changed must not."""
    import numpy as np

    rows = json.loads(path.read_text(encoding="utf-8"))
    positives = [(normalize_prompt(r["origin"]), normalize_prompt(r["similar"])) for r in rows]
    negatives: list[tuple[str, str, str]] = []
    for origin, _ in positives:
        number = re.search(r"\d+", origin)
        if number:
            changed = origin[: number.start()] + str(int(number.group()) + 1) + origin[number.end() :]
            negatives.append(("number changed", origin, changed))
        verb = re.search(r"\b(is|are|can|does|will)\b", origin)
        if verb:
            negatives.append(("negation added", origin, origin[: verb.end()] + " not" + origin[verb.end() :]))
    texts = sorted({t for pair in positives for t in pair} | {t for _, a, b in negatives for t in (a, b)})
    table = embeddings(texts, name="gptcache_mock")

    def rates(pairs: list[tuple[str, str]]) -> str:
        sims = [float(np.dot(table[a], table[b])) for a, b in pairs]
        cells = [sum(s >= t for s in sims) / len(pairs) for t in (0.80, 0.95)]
        cells.append(sum(shipped_hit(a, b, s) for (a, b), s in zip(pairs, sims, strict=True)) / len(pairs))
        return " | ".join(f"{c:.3f}" for c in cells)

    print("\nGPTCache mock_data.json: share of pairs that hit (want 1 for paraphrases, 0 for changed facts)\n")
    print("| pairs | n | cosine >= 0.80 | cosine >= 0.95 | shipped |\n|---|---|---|---|---|")
    print(f"| paraphrases (positives) | {len(positives)} | {rates(positives)} |")
    for kind in ("number changed", "negation added"):
        pairs = [(a, b) for k, a, b in negatives if k == kind]
        print(f"| {kind} (negatives) | {len(pairs)} | {rates(pairs)} |")


def main() -> None:
    """Print precision/recall of plain cosine and of the shipped setting on both splits."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--replay", type=int, default=2000, help="pairs to replay through SemanticCache")
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
    table = embeddings(sorted({t for a, b, _, _ in pairs for t in (a, b)}))
    sims = [float(np.dot(table[a], table[b])) for a, b, _, _ in pairs]
    start = time.perf_counter()
    shipped = [shipped_hit(a, b, s) for (a, b, _, _), s in zip(pairs, sims, strict=True)]
    checked = sum(1 for (a, b, _, _), s in zip(pairs, sims, strict=True) if a != b and s >= DEFAULT_THRESHOLD)
    verify_us = (time.perf_counter() - start) / max(checked, 1) * 1e6
    # Plain cosine at the threshold that matches the shipped setting's recall on
    # tune: what the verifier buys at equal recall.
    tune_recall = score(shipped, pairs, "tune")[1]
    matched = next(
        t / 1000 for t in range(999, 500, -1) if score([s >= t / 1000 for s in sims], pairs, "tune")[1] >= tune_recall
    )
    settings = [
        ("cosine >= 0.80 (LiteLLM/GPTCache)", [s >= 0.80 for s in sims]),
        (f"cosine >= {matched:.3f} (same tune recall as shipped)", [s >= matched for s in sims]),
        ("cosine >= 0.95", [s >= 0.95 for s in sims]),
        (f"cosine >= {DEFAULT_THRESHOLD:.2f}, no verifier", [s >= DEFAULT_THRESHOLD for s in sims]),
        (f"shipped: cosine >= {DEFAULT_THRESHOLD:.2f} + RuleVerifier", shipped),
    ]
    n_dup = sum(d for _, _, d, _ in pairs)
    print(f"QQP dev: {len(pairs)} pairs, {n_dup} duplicates; {DEFAULT_VERIFIER}\n")
    print("| setting | tune P | tune R | held-out P | held-out R | all P | all R | hits (all) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, hits in settings:
        cells = []
        for split in ("tune", "held-out", None):
            p, r, n = score(hits, pairs, split)
            cells += [f"{p:.3f}", f"{r:.3f}"]
        print(f"| {name} | {' | '.join(cells)} | {n} |")
    print(f"\nverifier: {verify_us:.0f} µs per checked pair ({checked} pairs above the threshold)")
    # Label noise caps any hit rule: the same question, asked twice, is sometimes labelled "not duplicate".
    same = [d for a, b, d, _ in pairs if a == b]
    loose = [d for a, b, d, _ in pairs if _loose(a) == _loose(b)]
    print(
        f"label noise: identical text labelled duplicate in {sum(same)}/{len(same)} pairs; "
        f"text equal up to case and spaces before punctuation: {sum(loose)}/{len(loose)}"
    )
    mock = args.data / "qqp" / "mock_data.json"
    if mock.exists():
        counterfactuals(mock)
    if args.replay:
        replay(pairs, table, shipped, args.replay)


if __name__ == "__main__":
    main()
