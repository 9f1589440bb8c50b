"""Can better correctness predictors, or agreement among the cheap models, reach the RouterBench goal?

The goal is 95% of GPT-4's accuracy at no more than 10% of its cost, with the
95% target certified at delta = 0.1. Two ways a router could get closer than
today's utility router, both judged on the *_train files only (cross-fitted),
then measured once on the *_test files:

1. Better per-option correctness predictors for the utility router (same 15
   options, same price sweep, same certificate): the task type's accuracy
   alone, today's kNN averages (k=160, prior weight 10, leave-one-out),
   logistic regression per task type over the MiniLM embedding, task type
   and prompt length (5-fold cross-fitted; scikit-learn, the `bench` extra),
   and the average of kNN and logistic regression.
2. Answer-pattern cascades over the cheap models: per task type, a tree of
   depth <= 3 calls cheap models one after another, looks at their answers so
   far (the choice letters; for code only which answers agree), and either
   keeps one of them, calls another cheap model, or calls GPT-4. Each tree is
   the best one on the prompts it is fitted on for a price of cost; fitted on
   all of train it is an in-sample (optimistic) bound, fitted on 4/5 and
   scored on the fifth it is what such a cascade would really deliver.

    python bench/routerbench_predictors.py [DATA_DIR]

Needs the MiniLM embeddings in bench/.cache/ (bench/routerbench.py writes
them) or the `cache` extra to compute them; skips when the data is missing.
"""

from __future__ import annotations

import itertools
import sys
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
from routerbench import MINILM, embed  # noqa: E402

from paymaster.evals import Objective, RecordSet, focus, learn_boilerplate  # noqa: E402
from paymaster.evals._objective import Reference, certified  # noqa: E402
from paymaster.evals._predict import _PRICES, all_options, outcomes, pareto_options  # noqa: E402
from paymaster.evals._routerbench import load_routerbench  # noqa: E402
from paymaster.router import answer_key  # noqa: E402
from paymaster.router._utility import UtilityRouter  # noqa: E402

REFERENCE = "gpt-4-1106-preview"
BUDGET = 0.10
DEFAULT_DATA = REPO.parent / "shared" / "data" / "routerbench"
FOLDS = 5
LAMBDAS = (0, 50, 100, 150, 200, 250, 300, 350, 400, 450, 500, 600, 700, 800, 1000, 1200, 1600, 2400, 3200, 6400)
"""Prices of cost (in accuracy points per all-GPT-4 cost) at which the answer-pattern trees are fitted."""


def folds(n: int) -> list[tuple[Any, Any]]:
    """The fixed 5-fold split of train used by every cross-fitted figure."""
    from sklearn.model_selection import KFold

    return list(KFold(FOLDS, shuffle=True, random_state=0).split(np.arange(n)))


def logistic(x: Any, y: Any, types: Any, qx: Any, qtypes: Any) -> Any:
    """Per task type, logistic regression of ``y`` on ``x``; predicted probability for each query row."""
    from sklearn.linear_model import LogisticRegression

    out = np.zeros(len(qx))
    for t in sorted(set(qtypes)):
        a, b = types == t, qtypes == t
        if y[a].min() == y[a].max():  # one class only: its rate
            out[b] = y[a].mean()
        else:
            out[b] = LogisticRegression(C=1.0, max_iter=2000).fit(x[a], y[a]).predict_proba(qx[b])[:, 1]
    return out


def features(vectors: Any, types: Any, texts: list[str], known: list[str], scale: tuple[float, float]) -> Any:
    """Embedding, task type one-hot and standardised log prompt length."""
    length = (np.log([len(t) for t in texts]) - scale[0]) / scale[1]
    return np.hstack([vectors, np.stack([types == t for t in known], 1).astype(float), length[:, None]])


def predictors(train: RecordSet, test: RecordSet, tv: Any, sv: Any, correct: Any, cost: Any) -> dict[str, Any]:
    """Each predictor's (train cross-fitted, test) predicted accuracy per option, and kNN's predicted cost."""
    types, qtypes = np.array(train.task_types), np.array(test.task_types)
    unit = float(train.cost[:, train.column(REFERENCE)].mean())
    knn = UtilityRouter(options=tuple(range(correct.shape[1])), embeddings=tv.astype(np.float32),
                        task_types=train.task_types, correct=correct, cost=cost, k=160, prior_weight=10.0,
                        price=0.0, unit_cost=unit)
    pk, ck = knn.predict(tv, train.task_types, loo=True)
    qk, dk = knn.predict(sv, test.task_types)
    prior, qprior = np.zeros_like(correct), np.zeros((len(test), correct.shape[1]))
    for t in sorted(set(train.task_types)):
        rows = types == t
        prior[rows] = (correct[rows].sum(0) - correct[rows]) / (rows.sum() - 1)  # leave-one-out
        qprior[qtypes == t] = correct[rows].mean(0)
    known = sorted(set(train.task_types))
    loglen = np.log([len(t) for t in train.texts])
    scale = (float(loglen.mean()), float(loglen.std()))
    x, qx = features(tv, types, train.texts, known, scale), features(sv, qtypes, test.texts, known, scale)
    lr, qlr = np.zeros_like(correct), np.zeros_like(qk)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs convergence notes on the one-class-heavy options
        for j in range(correct.shape[1]):
            for fit, held in folds(len(train)):
                lr[held, j] = logistic(x[fit], correct[fit, j], types[fit], x[held], types[held])
            qlr[:, j] = logistic(x, correct[:, j], types, qx, qtypes)
    return {
        "task type's accuracy only": (prior, qprior),
        "kNN (today: k=160, prior weight 10)": (pk, qk),
        "logistic regression per task type": (lr, qlr),
        "average of kNN and logistic regression": ((pk + lr) / 2, (qk + qlr) / 2),
        "_cost": (ck, dk),
    }


def part_one(train: RecordSet, test: RecordSet, tv: Any, sv: Any) -> None:
    """Predictors for the utility router: Brier score, train curve, certified 95% setting, then test once."""
    pool = all_options(train.models)
    correct, cost = outcomes(train, pool)
    keep = pareto_options(train.task_types, correct, cost)
    options = [pool[j] for j in keep]
    correct, cost = correct[:, keep], cost[:, keep]
    tcorrect, tcost = outcomes(test, options)
    preds = predictors(train, test, tv, sv, correct, cost)
    ck, dk = preds.pop("_cost")
    objective = Objective.quality("0.95", REFERENCE, delta=0.1)
    ref = Reference.of(train, objective)
    ref_acc, ref_total = float(ref.correct.mean()), float(ref.cost.sum())
    unit = ref_total / len(train)
    tref = test.cost[:, test.column(REFERENCE)].sum()
    rows, trows = np.arange(len(train)), np.arange(len(test))
    print(f"1. Predictors for the utility router ({len(options)} options), train cross-fitted, test once")
    print("| predictor | Brier (train) | train: best within 10% | train: certified 95% | test: certified 95% "
          "| test: train's best within 10% |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (p, q) in preds.items():
        curve = []
        for price in _PRICES:  # one chain from price 0 up, as calibrate_utility sweeps it
            pick = np.argmax(p - price * ck / unit, axis=1)
            curve.append(ref.point(correct[rows, pick], cost[rows, pick], {"price": price}))
        chosen = certified(curve, objective, ref_acc, ref_total, fallback=ref.alone())
        within = [c for c in curve if c.cost / ref_total <= BUDGET]
        best = max(within, key=lambda c: (c.accuracy, -c.cost))

        def on_test(point: Any, q: Any = q) -> str:
            if point.params.get("fallback"):
                return f"{test.correct[:, test.column(REFERENCE)].mean():.4f} at 100.0%"
            pick = np.argmax(q - point.params["price"] * dk / unit, axis=1)
            return f"{tcorrect[trows, pick].mean():.4f} at {tcost[trows, pick].sum() / tref:.1%}"

        brier = float(((p - correct) ** 2).mean())
        print(f"| {name} | {brier:.4f} | {best.accuracy:.4f} at {best.cost / ref_total:.1%} | "
              f"{chosen.point.accuracy:.4f} at {chosen.point.cost / ref_total:.1%} | {on_test(chosen.point)} | "
              f"{on_test(best)} |")


class Trees:
    """Answer-pattern cascades over the cheap models of one record set, fitted per task type."""

    def __init__(self, records: RecordSet, cheap: list[int], depth: int = 3) -> None:
        self.records, self.cheap, self.depth = records, cheap, depth
        self.ref = records.column(REFERENCE)
        self.share = records.cost / records.cost[:, self.ref].sum()
        codes: dict[str, int] = {}
        keys = [[answer_key(records.response(i, m)) for m in records.models] for i in range(len(records))]
        self.codes = np.array([[codes.setdefault(k, len(codes)) for k in row] for row in keys])
        # A choice letter is the same code in every record set (a tree fitted on train runs on test).
        self.letter = np.array([[ord(k) if len(k) == 1 else -1 for k in row] for row in keys])
        self.types = np.array(records.task_types)

    def signature(self, rows: Any, seen: list[int]) -> Any:
        """What the answers so far say, one row per prompt: choice letters (else one 'other' code), or for
        code tasks only which of them agree."""
        out = np.zeros((len(rows), len(seen)), dtype=np.int64)
        for p, m in enumerate(seen):
            if self.types[rows[0]] == "mbpp":
                first = np.full(len(rows), p)
                for q in range(p - 1, -1, -1):
                    first = np.where(self.codes[rows, seen[q]] == self.codes[rows, m], q, first)
                out[:, p] = first
            else:
                out[:, p] = self.letter[rows, m]
        return out

    def fit(self, rows: Any, seen: list[int], price: float) -> tuple[float, Any]:
        """The best tree for ``rows`` at this price of cost: (value, tree)."""
        c = self.records.correct
        best: tuple[float, Any] = (float(c[rows, self.ref].sum() - price * self.share[rows, self.ref].sum()),
                                   ("gpt4",))
        for m in seen:
            if c[rows, m].sum() > best[0]:
                best = (float(c[rows, m].sum()), ("keep", m))
        if len(seen) < self.depth:
            for m in self.cheap:
                if m in seen:
                    continue
                value, sub = -price * float(self.share[rows, m].sum()), {}
                sig = self.signature(rows, [*seen, m])
                groups, inverse = np.unique(sig, axis=0, return_inverse=True)
                for g in range(len(groups)):
                    v, tree = self.fit(rows[inverse.ravel() == g], [*seen, m], price)
                    value += v
                    sub[tuple(groups[g])] = tree
                if value > best[0]:
                    best = (value, ("call", m, sub))
        return best

    def run(self, tree: Any, rows: Any, seen: list[int]) -> tuple[Any, Any]:
        """Per prompt of ``rows``: the tree's verdict and its cost (share of all-GPT-4); unseen patterns keep
        the answer of the model just called."""
        if tree[0] == "gpt4":
            return self.records.correct[rows, self.ref], self.share[rows, self.ref]
        if tree[0] == "keep":
            return self.records.correct[rows, tree[1]], np.zeros(len(rows))
        m, sub = tree[1], tree[2]
        sig = self.signature(rows, [*seen, m])
        correct, cost = np.zeros(len(rows)), self.share[rows, m].copy()
        for pattern in {tuple(s) for s in sig}:
            hit = (sig == pattern).all(axis=1)
            a, b = self.run(sub.get(pattern, ("keep", m)), rows[hit], [*seen, m])
            correct[hit], cost[hit] = a, cost[hit] + b
        return correct, cost


def best_combo(per_type: dict[str, list[tuple[float, float, Any]]], n: int) -> tuple[float, float, tuple[Any, ...]]:
    """The most correct answers within the budget picking one point per task type: (accuracy, cost, picks)."""
    best = (0.0, 0.0, ())
    for combo in itertools.product(*per_type.values()):
        spent = sum(p[1] for p in combo)
        accuracy = sum(p[0] for p in combo) / n
        if spent <= BUDGET and accuracy > best[0]:
            best = (accuracy, spent, tuple(p[2] for p in combo))
    return best


def part_two(train: RecordSet, test: RecordSet) -> None:
    """Answer-pattern cascades: in-sample bound and cross-fitted figure on train, then test once."""
    total = float(train.cost[:, train.column(REFERENCE)].sum())
    cheap = [j for j, m in enumerate(train.models) if float(train.cost[:, j].sum()) < 0.2 * total]
    trees = Trees(train, cheap)
    types = np.array(train.task_types)
    fold_list = folds(len(train))
    inside: dict[str, list[tuple[float, float, Any]]] = {}
    crossed: dict[str, list[tuple[float, float, Any]]] = {}
    for t in sorted(set(train.task_types)):
        rows = np.flatnonzero(types == t)
        inside[t], crossed[t] = [], []
        for price in LAMBDAS:
            _, tree = trees.fit(rows, [], price)
            a, c = trees.run(tree, rows, [])
            inside[t].append((float(a.sum()), float(c.sum()), (price, tree)))
            ca, cc = 0.0, 0.0
            for fit, held in fold_list:
                _, part = trees.fit(np.intersect1d(rows, fit), [], price)
                a, c = trees.run(part, np.intersect1d(rows, held), [])
                ca, cc = ca + float(a.sum()), cc + float(c.sum())
            crossed[t].append((ca, cc, price))
    names = ", ".join(train.models[j] for j in cheap)
    print(f"\n2. Answer-pattern cascades (depth <= {trees.depth} over {len(cheap)} cheap models: {names}; GPT-4 "
          "when the pattern says so)")
    accuracy, spent, _ = best_combo(inside, len(train))
    print(f"   train, fitted and scored on the same prompts (optimistic bound): best within 10%: "
          f"{accuracy:.4f} at {spent:.1%}")
    accuracy, spent, prices = best_combo(crossed, len(train))
    print(f"   train, 5-fold cross-fitted: best within 10%: {accuracy:.4f} at {spent:.1%} "
          f"(prices per task type {dict(zip(sorted(crossed), prices, strict=True))})")
    # The cross-fitted choice of prices, refitted on all of train, measured once on test.
    tests = Trees(test, cheap)
    ttypes = np.array(test.task_types)
    right, paid = 0.0, 0.0
    for t, price in zip(sorted(crossed), prices, strict=True):
        _, tree = trees.fit(np.flatnonzero(types == t), [], price)
        a, c = tests.run(tree, np.flatnonzero(ttypes == t), [])
        right, paid = right + float(a.sum()), paid + float(c.sum())
    print(f"   test, those prices refitted on all of train: {right / len(test):.4f} at {paid:.1%}")


def main() -> None:
    """Both parts on the train and test files of DATA_DIR (skipped when it is missing)."""
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DATA
    if not data.is_dir():
        print(f"skipped: no RouterBench data in {data}")
        return
    train = RecordSet.build(load_routerbench(data, "train"))
    test = RecordSet.build(load_routerbench(data, "test"), train.models)
    drop = frozenset(learn_boilerplate(train.texts))
    tv = embed([focus(t, drop) for t in train.texts], MINILM)
    sv = embed([focus(t, drop) for t in test.texts], MINILM)
    print(f"RouterBench: {len(train)} train, {len(test)} test prompts; goal: 95% of GPT-4's accuracy within "
          f"{BUDGET:.0%} of its cost")
    part_one(train, test, tv, sv)
    part_two(train, test)


if __name__ == "__main__":
    main()
