"""How much accuracy can any router buy on RouterBench within 10% of all-GPT-4's cost? (train split only)

The issue's goal is 95% of GPT-4's accuracy at no more than 10% of its cost.
This bench bounds what is reachable, on the *_train files only:

1. the best per-task-type policy (each task type answered by one model, or by
   a cheap-check cascade: a model answers, another checks, GPT-4 answers when
   they disagree) within the cost budget, chosen with the task types known;
2. the same base models plus *perfect foresight* of GPT-4's help: GPT-4 answers
   exactly the prompts it gets right and the base model gets wrong, cheapest
   first, until the budget is spent. No router can escalate better than that.

    python bench/routerbench_headroom.py [DATA_DIR]
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from paymaster.evals import RecordSet  # noqa: E402
from paymaster.evals._routerbench import load_routerbench  # noqa: E402
from paymaster.router import answer_key  # noqa: E402

REFERENCE = "gpt-4-1106-preview"
BUDGET = 0.10  # share of all-GPT-4 cost
TARGET = 0.95  # share of GPT-4's accuracy
DEFAULT_DATA = REPO.parent / "shared" / "data" / "routerbench"


def options(records: RecordSet, rows: list[int]) -> list[tuple[str, float, float]]:
    """Every single model and every two-model cheap-check cascade to GPT-4 on ``rows``: (label, correct, cost)."""
    ref = records.column(REFERENCE)
    total = float(records.cost[:, ref].sum())
    out = [(m, float(records.correct[rows, j].sum()), float(records.cost[rows, j].sum()) / total)
           for j, m in enumerate(records.models)]
    cheap = [m for m in records.models if float(records.cost[:, records.column(m)].sum()) < 0.2 * total]
    keys = {m: [answer_key(records.response(i, m)) for i in rows] for m in cheap}
    for a, c in itertools.permutations(cheap, 2):
        ja, jc = records.column(a), records.column(c)
        correct = cost = 0.0
        for n, i in enumerate(rows):
            cost += float(records.cost[i, ja] + records.cost[i, jc])
            if keys[a][n] == keys[c][n]:
                correct += float(records.correct[i, ja])
            else:
                correct += float(records.correct[i, ref])
                cost += float(records.cost[i, ref])
        out.append((f"{a} + {c} check -> {REFERENCE}", correct, cost / total))
    return out


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DATA
    if not data.is_dir():
        print(f"skipped: no RouterBench data in {data}")
        return
    records = RecordSet.build(load_routerbench(data, "train"))
    ref = records.column(REFERENCE)
    n = len(records)
    needed = TARGET * float(records.correct[:, ref].mean())
    types = sorted(set(records.task_types))
    by_type = {t: [i for i, x in enumerate(records.task_types) if x == t] for t in types}
    per_type = {t: options(records, rows) for t, rows in by_type.items()}
    best: tuple[float, float, tuple[str, ...]] | None = None
    for combo in itertools.product(*per_type.values()):
        cost = sum(o[2] for o in combo)
        accuracy = sum(o[1] for o in combo) / n
        if cost <= BUDGET and (best is None or accuracy > best[0]):
            best = (accuracy, cost, tuple(o[0] for o in combo))
    assert best is not None
    print(f"RouterBench train split, {n} prompts; GPT-4 accuracy {records.correct[:, ref].mean():.4f}; "
          f"{TARGET:.0%} of it is {needed:.4f}")
    print(f"1. best per-task-type policy within {BUDGET:.0%} of GPT-4's cost: accuracy {best[0]:.4f} at "
          f"{best[1]:.1%}")
    for t, choice in zip(types, best[2], strict=True):
        print(f"     {t}: {choice}")
    # 2. The same base models, then GPT-4 exactly where it helps, cheapest prompts first.
    base = {t: records.column(choice.split(" + ")[0]) for t, choice in zip(types, best[2], strict=True)}
    total = float(records.cost[:, ref].sum())
    correct = spent = 0.0
    helps = []
    for t, rows in by_type.items():
        j = base[t]
        for i in rows:
            correct += float(records.correct[i, j])
            spent += float(records.cost[i, j]) / total
            if records.correct[i, ref] > records.correct[i, j]:
                helps.append(float(records.cost[i, ref]) / total)
    escalated = 0
    for share in sorted(helps):
        if spent + share > BUDGET:
            break
        spent += share
        correct += 1
        escalated += 1
    print(f"2. those base models plus perfect foresight of GPT-4's help ({escalated} of {len(helps)} prompts it "
          f"fixes, within budget): accuracy {correct / n:.4f} at {spent:.1%}")
    print(f"A router that answers with these models and escalates to GPT-4 cannot do better than 2; to certify "
          f"{needed:.4f} (a lower confidence bound above it, not just the accuracy) its escalations would have to "
          "be almost as precise as foresight. What is left is choosing among the cheap models per prompt, which "
          "the utility router does from its neighbours' verdicts.")


if __name__ == "__main__":
    main()
