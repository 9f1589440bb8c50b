"""What does Paymaster's router save, and what does it cost in quality, on real recorded outcomes?

RouterBench (Hu et al., 2024) recorded 11 models' answers, 0/1 verdicts and
real USD costs on ARC-Challenge, MBPP and Winogrande. Every router here is
calibrated on the *_train files only (leave-one-out where it learns), then
measured once on the pooled *_test files (953 prompts). The learned router
is also run end to end: Runtime + ScoreRouter + ReplayProvider, with costs
read back from the ledger.

    python bench/routerbench.py [DATA_DIR] [--embedder all-MiniLM-L6-v2|hashing-1024] [--no-runtime]

DATA_DIR defaults to ../shared/data/routerbench next to the repository; the
bench skips cleanly when it is missing. Outputs go to bench/out/ (untracked):
the thresholds file and kNN index, routerbench.md and routerbench.png.
Embeddings are kept in bench/.cache/ (the first MiniLM run takes ~3 minutes
on 2 cores).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from routerbench_report import Row, markdown, print_rows, print_selection, write_plot  # noqa: E402

from paymaster.errors import MissingExtraError  # noqa: E402
from paymaster.evals import (  # noqa: E402
    Calibration,
    Cascade,
    Objective,
    PolicyResult,
    RecordSet,
    calibrate_cascade,
    calibrate_knn,
    calibrate_routed_cascade,
    cascaded,
    focus,
    learn_boilerplate,
    loo_predictions,
    make_embedder,
    oracle,
    single,
)
from paymaster.evals._cascade import apply_routed_cascade  # noqa: E402
from paymaster.evals._policyfile import write_utility_policy  # noqa: E402
from paymaster.evals._predict import UtilityCalibration, calibrate_utility, replay  # noqa: E402
from paymaster.evals._routerbench import load_routerbench, routerbench_files  # noqa: E402
from paymaster.providers._replay import tier_name  # noqa: E402
from paymaster.router._knn import score_embeddings  # noqa: E402
from paymaster.router._score import LengthScorerSpec  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "routerbench"
DELTA = 0.1  # every target must hold on unseen prompts with probability >= 1 - DELTA
OUT = REPO / "bench" / "out"
CACHE = REPO / "bench" / ".cache" / "routerbench"
GOAL_ACCURACY = 0.836  # 95% of GPT-4's test accuracy, as the issue states it
GOAL_COST = 0.10  # share of all-GPT-4 cost
MINILM = "all-MiniLM-L6-v2"


def embed(texts: list[str], name: str) -> Any:
    """Embeddings of ``texts``, cached on disk by content (so reruns skip the model)."""
    import numpy as np

    key = hashlib.sha256("\x00".join([name, *texts]).encode()).hexdigest()[:20]
    path = CACHE / f"{name}-{key}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False)
    vectors = make_embedder(name).encode(texts)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors, allow_pickle=False)
    return vectors


def learned(train: RecordSet, test: RecordSet, name: str, objectives: list[Objective]) -> list[Routed]:
    """Calibrate the kNN score router on train for each objective; score the test split with each."""
    boilerplate = learn_boilerplate(train.texts)
    drop = frozenset(boilerplate)
    train_vectors = embed([focus(t, drop) for t in train.texts], name)
    test_vectors = embed([focus(t, drop) for t in test.texts], name)
    out = []
    for objective in objectives:
        calibration = calibrate_knn(train, train_vectors, embedder=name, objective=objective, boilerplate=boilerplate)
        assert calibration.index is not None and not isinstance(calibration.scorer, LengthScorerSpec)
        k, weight = calibration.scorer["k"], calibration.scorer["prior_weight"]
        scores, accuracy = score_embeddings(calibration.index, test_vectors, k, weight)
        out.append(Routed(calibration, scores, accuracy, k, weight))
    return out


def utility(
    train: RecordSet, test: RecordSet, name: str, objectives: list[Objective]
) -> tuple[list[PolicyResult], list[UtilityCalibration], Any]:
    """The expected-utility router over models and cascades, calibrated on train per objective, run on test."""
    boilerplate = learn_boilerplate(train.texts)
    drop = frozenset(boilerplate)
    train_vectors = embed([focus(t, drop) for t in train.texts], name)
    test_vectors = embed([focus(t, drop) for t in test.texts], name)
    out, calibrations = [], []
    for objective in objectives:
        calibration = calibrate_utility(train, train_vectors, objective=objective, boilerplate=boilerplate)
        calibrations.append(calibration)
        print(f"utility router, {objective.kind} {objective.target}: {calibration.router.describe()}; "
              f"train (leave-one-out) accuracy {calibration.train.summary.accuracy:.4f}, "
              f"cost ${calibration.train.summary.cost_usd:.4f}")
        if calibration.choice is not None:
            print(f"  certificate: {calibration.choice.describe(objective)}")
        out.append(replay(test, calibration.router.route(test_vectors, test.task_types)))
    return out, calibrations, test_vectors


def run_policy_in_runtime(test: RecordSet, policy: Path, expected: PolicyResult) -> tuple[PolicyResult, int, bool]:
    """Every test prompt through Runtime + PolicyRouter + ReplayProvider; stages and costs read from the ledger.

    Returns the result, on how many prompts the route (model or cascade path) matches ``expected`` (the offline
    replay of the same policy), and whether every task's ledger cost equals its offline cost exactly.
    """
    import tempfile

    import anyio

    from paymaster import Agent, Budget, Runtime
    from paymaster._money import from_picos
    from paymaster.evals._policies import _result
    from paymaster.providers._replay import ReplayProvider

    class RouterBenchAgent(Agent):
        """Sends the prompt as it is: no system prompt, no caps."""

        name = "routerbench"
        instructions = ""
        budget = Budget()

    provider = ReplayProvider(test.prompts)
    models = {t.name: t.model for t in provider.tier_table().tiers}
    routes, correct, costs = [], [], []
    with tempfile.TemporaryDirectory() as tmp, Runtime(
        ledger=Path(tmp) / "bench.db", provider=provider, tiers=provider.tier_table(), prices=provider.price_book(),
        router=policy,
    ) as runtime:

        async def go() -> None:
            for i, prompt in enumerate(test.prompts):
                outcome = await runtime.run(RouterBenchAgent, prompt.prompt, tenant="routerbench")
                stages = [models[s.tier or ""] for s in runtime.ledger.steps(outcome.task_id) if s.kind == "execute"]
                # One stage: a model; two: the cascade's answer stood (checked); three: it escalated.
                answered = stages[0] if len(stages) == 2 else stages[-1]
                routes.append(answered if len(stages) == 1 else
                              f"{answered} (checked)" if len(stages) == 2 else f"{answered} (escalated)")
                correct.append(bool(test.correct[i, test.column(answered)]))
                task = runtime.ledger.task(outcome.task_id)
                assert task is not None
                costs.append(from_picos(task.cost_picos))

        anyio.run(go)
    result = _result(test, "utility router via Runtime", routes, correct, costs)
    agree = sum(a == b for a, b in zip(routes, expected.routes, strict=True))
    exact = all(a == b for a, b, r, e in zip(costs, expected.costs, routes, expected.routes, strict=True) if r == e)
    return result, agree, exact


@dataclass(frozen=True)
class Routed:
    """A calibrated kNN router and the test split's escalation scores and predicted accuracy under it."""

    calibration: Calibration
    scores: Any
    accuracy: Any
    k: int
    prior_weight: float


def run_in_runtime(test: RecordSet, thresholds: Path, expected: PolicyResult) -> tuple[PolicyResult, int]:
    """Every test prompt through Runtime + ScoreRouter + ReplayProvider; costs read back from the ledger."""
    import tempfile

    import anyio

    from paymaster import Agent, Budget, Runtime
    from paymaster._money import from_picos
    from paymaster.evals import routed
    from paymaster.providers._replay import ReplayProvider
    from paymaster.router import ScoreRouter

    class RouterBenchAgent(Agent):
        """Sends the prompt as it is: no system prompt, no caps (the bench measures cost, it does not cap it)."""

        name = "routerbench"
        instructions = ""
        budget = Budget()

    replay = ReplayProvider(test.prompts)
    models = {t.name: t.model for t in replay.tier_table().tiers}
    routes: list[str] = []
    ledger_costs = []
    with tempfile.TemporaryDirectory() as tmp:
        runtime = Runtime(
            ledger=Path(tmp) / "bench.db", provider=replay, tiers=replay.tier_table(), prices=replay.price_book()
        )
        runtime.router = ScoreRouter.from_file(thresholds, runtime.tiers)

        async def go() -> None:
            for prompt in test.prompts:
                outcome = await runtime.run(RouterBenchAgent, prompt.prompt, tenant="routerbench")
                steps = runtime.ledger.steps(outcome.task_id)
                routes.append(models[steps[-1].tier or ""])
                task = runtime.ledger.task(outcome.task_id)
                assert task is not None
                ledger_costs.append(from_picos(task.cost_picos))

        with runtime:
            anyio.run(go)
    result = routed(test, "learned router via Runtime", routes)
    assert list(result.costs) == ledger_costs, "ledger costs differ from the recorded costs"
    agree = sum(a == b for a, b in zip(routes, expected.routes, strict=True))
    return result, agree


def main(argv: list[str] | None = None) -> int:
    """Run the bench; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--embedder", default=MINILM, help=f"{MINILM} (the cache extra) or hashing-1024")
    parser.add_argument("--no-runtime", action="store_true", help="skip the end-to-end run through the Runtime")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if not routerbench_files(args.data_dir, "train") or not routerbench_files(args.data_dir, "test"):
        print(f"skipped: no RouterBench *_train.csv / *_test.csv files in {args.data_dir}")
        return 0
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / ".gitignore").write_text("*\n")  # generated files stay out of git
    train = RecordSet.build(load_routerbench(args.data_dir, "train"))
    test = RecordSet.build(load_routerbench(args.data_dir, "test"), train.models)
    quality, cost = Objective.quality("0.95", delta=DELTA), Objective.cost(str(GOAL_COST), delta=DELTA)
    reference = quality.reference_model(train)
    print(f"train {len(train)} prompts, test {len(test)} prompts, {len(train.models)} models; reference {reference}")
    print(f"missing verdicts (counted as wrong): train {train.missing}, test {test.missing}")

    embedders = [args.embedder] + (["hashing-1024"] if args.embedder != "hashing-1024" else [])
    results: list[tuple[str, PolicyResult, str]] = []
    curves: dict[str, list[tuple[float, float]]] = {}
    primary: Routed | None = None
    utility_runtime: tuple[str, PolicyResult] | None = None
    for name in embedders:
        try:
            by_quality, by_cost = learned(train, test, name, [quality, cost])
        except MissingExtraError as exc:
            print(f"note: {name} is unavailable ({exc}); skipping it")
            continue
        for label, r in (("target 95% quality", by_quality), ("target 10% cost", by_cost)):
            results.append((f"learned router, kNN {name}, {label}", r.calibration.apply(test, r.scores),
                            f"kNN {name}, {label}"))
            print(f"{name}, {label}: k={r.k}, prior weight {r.prior_weight}; {r.calibration.describe()}")
        curves[f"kNN {name}: train-swept thresholds, on test"] = sweep_on_test(by_quality, test)
        if primary is None:
            policies, calibrations, test_vectors = utility(train, test, name, [quality, cost])
            for label, u in zip(("target 95% quality", "target 10% cost"), policies, strict=True):
                results.append((f"utility router over models and cheap-check cascades, kNN {name}, {label}", u,
                                f"utility router, {label}"))
            policy_path = write_utility_policy(calibrations[0], args.out / "routerbench-policy.json", embedder=name)
            print(f"utility policy written to {policy_path}")
            if not args.no_runtime:
                t0 = time.perf_counter()
                offline = replay(test, calibrations[0].router.route(test_vectors), "utility router, types inferred")
                result, agree, exact = run_policy_in_runtime(test, policy_path, offline)
                utility_runtime = (f"same utility policy, run in the Runtime ({len(test)} tasks, task types "
                                   "inferred from neighbours, ledger costs)", result)
                print(f"utility policy in the runtime: {len(test)} tasks in {time.perf_counter() - t0:.0f}s; "
                      f"routes agree with its offline replay on {agree}/{len(test)} prompts; ledger cost equals "
                      f"the offline cost on every agreeing prompt: {exact}")
        primary = primary or by_quality

    cascade = calibrate_cascade(train, objective=quality, escalate=reference)
    results.append(
        (
            f"cascade: {describe(cascade.cascade)}",
            cascaded(test, "cascade", cascade.cascade, [True] * len(test), [reference] * len(test)),
            "cascade, target 95% quality",
        )
    )
    print(f"cascade: {cascade.cascade.label}; train accuracy {cascade.train.summary.accuracy:.4f}")
    runtime_row: tuple[str, PolicyResult] | None = None
    if primary is not None:
        assert primary.calibration.index is not None
        loo_scores, loo_accuracy = loo_predictions(primary.calibration.index, primary.k, primary.prior_weight)
        hybrid = calibrate_routed_cascade(
            train,
            scores=loo_scores,
            accuracy=loo_accuracy,
            objective=quality,
            thresholds=sorted({p.params["thresholds"] for p in primary.calibration.curve}),
        )
        results.append(
            (
                f"learned router + cascade ({describe(hybrid.cascade)} when the predicted gain <= "
                f"{hybrid.params['band']})",
                apply_routed_cascade(test, primary.scores, primary.accuracy, hybrid.cascade, hybrid.params),
                "learned router + cascade, target 95% quality",
            )
        )
        print(f"router + cascade: {hybrid.params}; train accuracy {hybrid.train.summary.accuracy:.4f}")
        thresholds_path = primary.calibration.write(args.out / "routerbench-thresholds.json")
        print(f"thresholds written to {thresholds_path}")
        if not args.no_runtime:
            t0 = time.perf_counter()
            batch = primary.calibration.apply(test, primary.scores)
            result, agree = run_in_runtime(test, thresholds_path, batch)
            runtime_row = (f"same learned router, run in the Runtime ({len(test)} tasks, ledger costs)", result)
            print(
                f"runtime run: {len(test)} tasks in {time.perf_counter() - t0:.0f}s; ledger cost = recorded cost, "
                f"exactly; routing agrees with the batch replay on {agree}/{len(test)} prompts"
            )

    ref_result = single(test, reference)
    rows = [Row("all " + reference, ref_result)]
    rows += [Row(m, single(test, m)) for m in test.models if m != reference]
    rows.append(Row("oracle (cheapest correct model)", oracle(test)))
    rows += [Row(label, r, paymaster=True, short=short) for label, r, short in results]
    if runtime_row is not None:
        rows.append(Row(*runtime_row, paymaster=True))
    if utility_runtime is not None:
        rows.append(Row(*utility_runtime, paymaster=True))
    print_rows(rows, ref_result, GOAL_ACCURACY, GOAL_COST)
    learned_rows = [row for row in rows if row.label.startswith(("learned router", "same learned router"))]
    if learned_rows:
        print_selection(learned_rows[-1].result)
    md = markdown(
        rows, ref_result, GOAL_ACCURACY, GOAL_COST, selection=learned_rows[-1].result if learned_rows else ref_result
    )
    (args.out / "routerbench.md").write_text(md, encoding="utf-8")
    png = write_plot(args.out / "routerbench.png", rows, ref_result, curves, GOAL_ACCURACY, GOAL_COST)
    print(f"wrote {args.out / 'routerbench.md'} and {png} in {time.perf_counter() - started:.0f}s")
    return 0


def describe(cascade: Cascade) -> str:
    """A cascade in short model names."""
    a, b, e = (tier_name(m) for m in (cascade.answer, cascade.check, cascade.escalate))
    return f"{a} answers, {b} checks, {e} if they disagree"


def sweep_on_test(routed: Routed, test: RecordSet) -> list[tuple[float, float]]:
    """The chosen k's thresholds (swept on train) measured on test: the curve in the plot."""
    from paymaster.evals import walk_many

    calibration, scores = routed.calibration, routed.scores
    ladder = test.restrict(calibration.models)
    rows = range(len(ladder))
    reference_cost = float(ladder.cost[:, -1].sum())
    points = []
    for t in sorted({p.params["thresholds"] for p in calibration.curve}):
        choice = walk_many(scores, t)
        points.append(
            (float(ladder.cost[rows, choice].sum()) / reference_cost, float(ladder.correct[rows, choice].mean()))
        )
    return points


if __name__ == "__main__":
    raise SystemExit(main())
