"""Does a calibrated quality target hold on prompts calibration never saw? 20 random re-splits of RouterBench.

RouterBench's train and test files are pooled, then split at random 20 times
(seeds 0-19) into a calibration part the size of the original train split and
a held-out part the size of the original test split. On each split the
routers are calibrated to the target (95% of GPT-4's accuracy, delta = 0.1)
on the calibration part only, then measured once on the held-out part: the
target *held* when the router's accuracy there is at least 95% of GPT-4's
accuracy on the same held-out prompts.

    python bench/routerbench_reliability.py [DATA_DIR] [--embedder hashing-1024|all-MiniLM-L6-v2]
        [--splits 20] [--delta 0.1] [--horizon N] [--routers utility,knn]

DATA_DIR defaults to ../shared/data/routerbench; the bench skips cleanly when
it is missing. Embeddings are cached per prompt text in bench/.cache/.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from paymaster.evals import (  # noqa: E402
    Objective,
    PolicyResult,
    RecordSet,
    calibrate_knn,
    focus,
    learn_boilerplate,
    make_embedder,
    single,
)
from paymaster.evals._predict import calibrate_utility, replay  # noqa: E402
from paymaster.evals._routerbench import load_routerbench, routerbench_files  # noqa: E402
from paymaster.router._knn import score_embeddings  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "routerbench"
CACHE = REPO / "bench" / ".cache" / "routerbench"


class TextCache:
    """Embeddings per text, kept in one .npz per embedder so re-splits embed each prompt once."""

    def __init__(self, name: str) -> None:
        import numpy as np

        self.name = name
        self.path = CACHE / f"{name}-by-text.npz"
        self.vectors: dict[str, Any] = {}
        if self.path.is_file():
            with np.load(self.path, allow_pickle=False) as data:
                self.vectors = {k: data[k] for k in data.files}
        self.embedder: Any = None

    def encode(self, texts: list[str]) -> Any:
        """Embeddings of ``texts`` (rows in order), computing only the texts not seen before."""
        import numpy as np

        keys = [hashlib.sha256(t.encode()).hexdigest()[:24] for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in self.vectors}.items())
        if missing:
            self.embedder = self.embedder or make_embedder(self.name)
            fresh = self.embedder.encode([t for _, t in missing])
            self.vectors.update({k: fresh[i] for i, (k, _) in enumerate(missing)})
            CACHE.mkdir(parents=True, exist_ok=True)
            np.savez(self.path, **self.vectors)
        return np.stack([self.vectors[k] for k in keys]).astype(np.float32)


def held(result: PolicyResult, reference: PolicyResult, target: float) -> tuple[bool, float, float]:
    """Whether ``result`` reached ``target`` of the reference's accuracy; its accuracy share and cost share."""
    s, r = result.summary, reference.summary
    assert s.cost_usd is not None and r.cost_usd is not None
    share = s.accuracy / r.accuracy
    return share >= target - 1e-12, share, float(s.cost_usd / r.cost_usd)


def main(argv: list[str] | None = None) -> int:
    """Run the re-splits; return the exit status."""
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--embedder", default="hashing-1024")
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--target", default="0.95")
    parser.add_argument("--delta", type=float, default=0.1, help="0 for point estimates (no confidence bound)")
    parser.add_argument("--horizon", type=int, default=None)
    parser.add_argument("--routers", default="utility,knn")
    args = parser.parse_args(argv)
    if not routerbench_files(args.data_dir, "train") or not routerbench_files(args.data_dir, "test"):
        print(f"skipped: no RouterBench *_train.csv / *_test.csv files in {args.data_dir}")
        return 0
    started = time.perf_counter()
    train0 = RecordSet.build(load_routerbench(args.data_dir, "train"))
    test0 = RecordSet.build(load_routerbench(args.data_dir, "test"), train0.models)
    pool = RecordSet.build([*train0.prompts, *test0.prompts], train0.models)
    n_cal = len(train0)
    target = float(args.target)
    objective = Objective.quality(args.target, delta=args.delta or None, horizon=args.horizon)
    routers = [r.strip() for r in args.routers.split(",") if r.strip()]
    cache = TextCache(args.embedder)
    print(f"{len(pool)} prompts pooled; {args.splits} splits of {n_cal} calibration / {len(pool) - n_cal} held-out; "
          f"target {args.target} of the reference's accuracy, delta {objective.delta}, horizon {args.horizon}; "
          f"embedder {args.embedder}")
    tally: dict[str, list[tuple[bool, float, float]]] = {r: [] for r in routers}
    for seed in range(args.splits):
        order = np.random.default_rng(seed).permutation(len(pool))
        cal, out = pool.subset(order[:n_cal]), pool.subset(order[n_cal:])
        reference = objective.reference_model(cal)
        drop = frozenset(learn_boilerplate(cal.texts))
        cal_vectors = cache.encode([focus(t, drop) for t in cal.texts])
        out_vectors = cache.encode([focus(t, drop) for t in out.texts])
        ref_result = single(out, reference)
        line = [f"split {seed:2d}:"]
        if "utility" in routers:
            u = calibrate_utility(cal, cal_vectors, objective=objective)
            result = replay(out, u.router.route(out_vectors, out.task_types))
            tally["utility"].append(held(result, ref_result, target))
            ok, share, cost = tally["utility"][-1]
            bound = u.choice.certificate.bound if u.choice and u.choice.certificate else float("nan")
            line.append(f"utility {'held' if ok else 'MISSED'} {share:.3f} at {cost:.1%} (bound {bound:.3f})")
        if "knn" in routers:
            k = calibrate_knn(cal, cal_vectors, embedder=args.embedder, objective=objective,
                              boilerplate=tuple(sorted(drop)))
            if k.index is None:  # fell back to the reference tier alone
                result = single(out, reference)
            else:
                assert isinstance(k.scorer, dict)
                scores, _ = score_embeddings(k.index, out_vectors, k.scorer["k"], k.scorer["prior_weight"])
                result = k.apply(out, scores)
            tally["knn"].append(held(result, ref_result, target))
            ok, share, cost = tally["knn"][-1]
            line.append(f"knn {'held' if ok else 'MISSED'} {share:.3f} at {cost:.1%}")
        print("  ".join(line), flush=True)
    for name, rows in tally.items():
        n_held = sum(ok for ok, _, _ in rows)
        shares = [s for _, s, _ in rows]
        costs = [c for _, _, c in rows]
        print(f"{name}: target held on {n_held}/{len(rows)} held-out parts; accuracy share "
              f"{min(shares):.3f}-{max(shares):.3f} (mean {sum(shares) / len(shares):.3f}); cost share "
              f"{min(costs):.1%}-{max(costs):.1%} (mean {sum(costs) / len(costs):.1%})")
    print(f"done in {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
