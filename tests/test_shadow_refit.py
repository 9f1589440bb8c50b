"""``paymaster calibrate --from-ledger LEDGER --refit FILE --out NEW``: a router file re-fitted on shadow records.

Every ledger here is written by a real Runtime with Shadow, routing by a real kNN thresholds file, and read back
through the real CLI. The scripted models: fast and balanced know capitals but get integrals wrong (alike), deep
gets both right, and the judge (fast) says the answers differ whenever it is asked.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import numpy as np
import pytest
from typer.testing import CliRunner

from paymaster import Agent, Budget, ModelRequest, Runtime, ScriptedProvider, Shadow, TaskStatus
from paymaster.cli import app
from paymaster.ledger._reader import Reader
from paymaster.ledger._shadows import shadow_records
from paymaster.planners import Complexity
from paymaster.router import KnnScorerSpec, Thresholds, load_thresholds, save_thresholds
from paymaster.router._knn import HashingEmbedder, KnnIndex

runner = CliRunner()


class Clerk(Agent):
    """Routed by whatever router the runtime loads."""

    name = "clerk"
    budget = Budget(usd="1.00")


class Pinned(Clerk):
    """Routes its own work to balanced, whatever the router says."""

    name = "pinned"
    routes = {Complexity.MODERATE: "balanced", Complexity.SIMPLE: "balanced"}  # noqa: RUF012


def capital(i: int) -> str:
    return f"Question {i}: which city is the capital of country number {i}?"


def integral(i: int) -> str:
    return f"Question {i}: what is the integral of x to the power {i} from zero to one?"


def reply(request: ModelRequest) -> str:
    """Capitals: everyone says Paris. Integrals: fast and balanced say 1/2, deep says 1/3. The judge (fast): NO."""
    user = request.messages[-1].content
    if user.startswith("Two answers were given"):
        return "NO"
    if "integral" in user:
        return "1/3" if request.model == "claude-sonnet-4-6" else "1/2"
    return "Paris"


def knn_file(folder: Path, threshold: float) -> Path:
    """A thresholds file over balanced and deep whose kNN index learned that balanced misses integrals."""
    texts = [capital(100 + i) for i in range(10)] + [integral(100 + i) for i in range(10)]
    index = KnnIndex(
        tiers=("balanced", "deep"), embeddings=HashingEmbedder(1024).encode(texts),
        correct=np.array([[1, 1]] * 10 + [[0, 1]] * 10, dtype=np.float32),
        relative_cost=np.array([[0.2, 1.0]] * 20, dtype=np.float32), boilerplate=(),
    )
    folder.mkdir(parents=True, exist_ok=True)
    digest = index.save(folder / "router.knn.npz")
    spec = KnnScorerSpec(k=3, embedder="hashing-1024", index="router.knn.npz", index_sha256=digest)
    return save_thresholds(Thresholds(scorer=spec, tiers=("balanced", "deep"), thresholds=(threshold,)),
                           folder / "router.json")


def run_traffic(ledger: Path, router: Path, texts: list[str], agent: type[Agent] = Clerk) -> list[str]:
    """Run ``texts`` as live tasks, every subtask shadowed on deep; return each task's routed tier."""
    with Runtime(ledger=ledger, provider=ScriptedProvider(reply), router=router,
                 shadow=Shadow(rate=1, tier="deep", budget="5")) as rt:

        async def go() -> list[str]:
            ids = []
            for text in texts:
                outcome = await rt.run(agent, text)
                assert outcome.status is TaskStatus.SUCCEEDED, outcome.stop_reason
                ids.append(outcome.task_id)
            await rt.shadows_done()
            return ids

        ids = anyio.run(go)
        tiers = []
        for task_id in ids:
            task = rt.ledger.task(task_id)
            assert task is not None and task.plan is not None
            [subtask] = task.plan["subtasks"]
            tiers.append(subtask["tier"])
    return tiers


def mixed(n: int, start: int = 0) -> list[str]:
    return [capital(i) if i % 2 else integral(i) for i in range(start, start + n)]


def refit(ledger: Path, source: Path, *extra: str, target: str = "0.9") -> tuple[int, str]:
    result = runner.invoke(app, ["calibrate", "--from-ledger", str(ledger), "--refit", str(source),
                                 "--target", target, *extra])
    return result.exit_code, result.output


def test_a_router_that_misses_on_live_traffic_is_refitted_and_the_new_file_holds_the_target(tmp_path: Path) -> None:
    source = knn_file(tmp_path / "calibrated", threshold=5.0)  # too high: nothing escalates to deep
    before = source.read_bytes()
    ledger = tmp_path / "live.db"
    assert run_traffic(ledger, source, mixed(40)) == ["balanced"] * 40
    out = tmp_path / "refitted" / "router.live.json"
    code, output = refit(ledger, source, "--out", str(out))
    assert code == 0, output
    assert "50.0%" in output  # balanced matched deep on the capitals only
    assert "re-fitted to thresholds" in output and f"Written to {out}" in output.replace("\n", "")
    assert source.read_bytes() == before  # the calibrated file is left as it was
    written = load_thresholds(out)
    [threshold] = written.thresholds
    assert threshold < 5.0
    assert written.train["source"] == "shadow evaluation" and written.train["items"] == 40
    assert written.train["matched_share"] == "1.0000" and written.train["routes"] == {"balanced": 20, "deep": 20}
    assert float(written.train["matched_share_lower_bound"]) >= 0.9
    assert written.objective["target"] == "0.9" and written.objective["reference"] == "deep"
    assert isinstance(written.scorer, KnnScorerSpec) and (out.parent / written.scorer.index).exists()
    # The runtime loads the new file: integrals now go to deep, capitals stay on balanced, on prompts never seen.
    fresh = tmp_path / "after.db"
    texts = mixed(30, start=200)
    assert run_traffic(fresh, out, texts) == ["deep" if "integral" in t else "balanced" for t in texts]
    held = runner.invoke(app, ["calibrate", "--from-ledger", str(fresh), "--target", "0.9"])
    assert held.exit_code == 0 and "holds on live traffic" in held.output, held.output
    # Re-fitting a file that holds writes it as it is, with the live bound.
    again = tmp_path / "again.json"
    code, output = refit(fresh, out, "--out", str(again))
    assert code == 0, output
    assert "as it is holds the target" in output
    assert load_thresholds(again).thresholds == written.thresholds


def test_traffic_the_cheap_tier_always_misses_escalates_and_the_rest_stays_cheap(tmp_path: Path) -> None:
    source = knn_file(tmp_path / "calibrated", threshold=5.0)
    ledger = tmp_path / "live.db"
    # Integrals only: balanced misses every one, so only settings sending every one of them to deep certify.
    run_traffic(ledger, source, [integral(i) for i in range(30)])
    out = tmp_path / "refitted.json"
    code, output = refit(ledger, source, "--out", str(out))
    assert code == 0, output
    written = load_thresholds(out)
    assert written.train["routes"] == {"deep": 30} and written.train["fallback_to_reference"] is False
    # The threshold stops short of everything: prompts the index knows balanced answers (capitals) stay there.
    assert run_traffic(tmp_path / "after.db", out, [integral(50), capital(51)]) == ["deep", "balanced"]


def test_too_few_records_say_how_many_it_takes_and_write_nothing(tmp_path: Path) -> None:
    source = knn_file(tmp_path / "calibrated", threshold=5.0)
    ledger = tmp_path / "live.db"
    run_traffic(ledger, source, mixed(10))
    out = tmp_path / "new.json"
    code, output = refit(ledger, source, "--out", str(out))
    assert code == 1, output
    assert "Too few records" in output and "at least 22 scored records" in output and "Nothing written" in output
    assert not out.exists()


def test_bad_input_is_refused_and_nothing_unnamed_is_overwritten(tmp_path: Path) -> None:
    source = knn_file(tmp_path / "calibrated", threshold=5.0)
    ledger = tmp_path / "live.db"
    run_traffic(ledger, source, mixed(30))
    ledger_bytes = ledger.read_bytes()
    # No --out: the re-fit writes only to a file the user names.
    code, output = refit(ledger, source)
    assert code == 2 and "--out" in output and not (Path.cwd() / "thresholds.json").exists()
    # --out naming something that is not a router file (here the ledger itself) is not overwritten.
    code, output = refit(ledger, source, "--out", str(ledger))
    assert code == 2 and "not overwritten" in output
    assert ledger.read_bytes() == ledger_bytes
    # --refit without --from-ledger, and --out with --from-ledger but no --refit.
    result = runner.invoke(app, ["calibrate", "records.jsonl", "--refit", str(source)])
    assert result.exit_code == 2 and "--from-ledger" in result.output
    result = runner.invoke(app, ["calibrate", "--from-ledger", str(ledger), "--out", str(tmp_path / "x.json")])
    assert result.exit_code == 2 and "--refit" in result.output
    # A router file that is not one.
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"hello": 1}', encoding="utf-8")
    code, output = refit(ledger, bogus, "--out", str(tmp_path / "y.json"))
    assert code == 2 and "neither a thresholds file nor a policy file" in output
    assert not (tmp_path / "y.json").exists()
    # Naming the source itself as --out replaces it in place (the user named it).
    code, output = refit(ledger, source, "--out", str(source))
    assert code == 0, output
    assert load_thresholds(source).train["source"] == "shadow evaluation"


def test_records_the_file_did_not_route_are_left_out_and_none_left_is_an_error(tmp_path: Path) -> None:
    source = knn_file(tmp_path / "calibrated", threshold=-5.0)  # sends everything to deep
    ledger = tmp_path / "live.db"
    run_traffic(ledger, source, mixed(30), agent=Pinned)  # the agent routes itself to balanced
    with Reader(ledger) as reader:
        assert {r.routed for r in shadow_records(reader)} == {"balanced"}
    code, output = refit(ledger, source, "--out", str(tmp_path / "new.json"))
    assert code == 2, output
    assert "30 routed otherwise" in output and not (tmp_path / "new.json").exists()


def test_a_ledger_without_shadow_records_says_so(tmp_path: Path) -> None:
    source = knn_file(tmp_path / "calibrated", threshold=5.0)
    ledger = tmp_path / "live.db"
    with Runtime(ledger=ledger, provider=ScriptedProvider(reply), router=source) as rt:
        rt.run_sync(Clerk, capital(1))
    code, output = refit(ledger, source, "--out", str(tmp_path / "new.json"))
    assert code == 2 and "No scored shadow records" in output
    assert not (tmp_path / "new.json").exists()
    assert json.loads(source.read_text(encoding="utf-8"))["thresholds"] == [5.0]


@pytest.mark.parametrize("good", [True, False])
def test_a_cascade_policy_is_kept_when_it_holds_and_falls_back_to_the_reference_when_not(tmp_path: Path,
                                                                                          good: bool) -> None:
    policy = tmp_path / "cascade.json"
    policy.write_text(json.dumps({"format": "paymaster.policy", "version": 1, "kind": "cascade",
                                  "cascade": {"answer": "fast", "check": "balanced", "escalate": "deep"}}),
                      encoding="utf-8")
    ledger = tmp_path / "live.db"
    texts = [capital(i) for i in range(30)] if good else [integral(i) for i in range(30)]
    run_traffic(ledger, policy, texts)
    out = tmp_path / "new.json"
    code, output = refit(ledger, policy, "--out", str(out))
    assert code == 0, output
    written = json.loads(out.read_text(encoding="utf-8"))
    if good:  # fast and balanced agree on capitals, and match deep
        assert "as it is holds the target" in output
        assert written["format"] == "paymaster.policy" and written["kind"] == "cascade"
    else:  # fast and balanced agree on 1/2 for integrals, so the cascade never escalates and deep disagrees
        assert written["format"] == "paymaster.thresholds" and written["tiers"] == ["deep"]


def test_a_utility_policy_is_refitted_by_its_price_of_accuracy(tmp_path: Path) -> None:
    from paymaster.router import Policy, load_policy, save_policy
    from paymaster.router._utility import UtilityRouter

    texts = [capital(100 + i) for i in range(10)] + [integral(100 + i) for i in range(10)]
    model = UtilityRouter(
        options=("balanced", "deep"), embeddings=HashingEmbedder(1024).encode(texts),
        task_types=("capitals",) * 10 + ("integrals",) * 10,
        correct=np.array([[1.0, 1.0]] * 10 + [[0.0, 1.0]] * 10), cost=np.array([[0.2, 1.0]] * 20),
        k=3, prior_weight=0.0, price=5.0, unit_cost=1.0,  # accuracy priced too dear: everything on balanced
    )
    digest = model.save_index(tmp_path / "policy.utility.npz")
    source = save_policy(Policy(kind="utility", options=("balanced", "deep"), k=3, price=5.0, unit_cost=1.0,
                                embedder="hashing-1024", index="policy.utility.npz", index_sha256=digest),
                         tmp_path / "policy.json")
    ledger = tmp_path / "live.db"
    assert run_traffic(ledger, source, mixed(40)) == ["balanced"] * 40
    out = tmp_path / "elsewhere" / "policy.live.json"
    code, output = refit(ledger, source, "--out", str(out))
    assert code == 0, output
    written = load_policy(out)
    assert written.price < 5.0 and written.train["routes"] == {"balanced": 20, "deep": 20}
    assert written.index == "policy.live.utility.npz" and (out.parent / written.index).exists()
    texts = mixed(10, start=300)
    assert run_traffic(tmp_path / "after.db", out, texts) == ["deep" if "integral" in t else "balanced"
                                                              for t in texts]


def test_a_reference_in_the_middle_of_the_ladder_keeps_a_file_that_holds(tmp_path: Path) -> None:
    # Three tiers, the shadow reference in the middle: lowering the balanced -> deep threshold would send
    # work to deep, of whose answers the records know nothing. Such settings are left out, not failed, so a
    # file whose every answer matched the reference is kept as it is, not replaced by "all to balanced".
    from decimal import Decimal

    from paymaster.evals._shadow import refit
    from paymaster.ledger._shadows import ShadowRecord
    from paymaster.router import LengthScorerSpec
    from paymaster.router._score import load_scorer, walk

    path = save_thresholds(Thresholds(scorer=LengthScorerSpec(), tiers=("fast", "balanced", "deep"),
                                      thresholds=(0.05, 0.5)), tmp_path / "three.json")
    thresholds = load_thresholds(path)
    scorer = load_scorer(thresholds, tmp_path)
    records, texts = [], {}
    for i in range(200):
        text = " ".join(["word"] * (2 + i % 20))  # short ones to fast, the rest to balanced; none to deep
        routed = thresholds.tiers[walk(scorer.score(text).values, thresholds.thresholds)]
        records.append(ShadowRecord(f"s{i}", f"live{i}", "clerk", "main", routed, "balanced", True, "judge",
                                    "succeeded", Decimal(0), 1e9 + i))
        texts[f"s{i}"] = text
    fit = refit(path, records, texts, 0.9, 0.1)
    assert {route for s in fit.settings for route in s.routes} <= {"fast", "balanced"}  # never to deep
    assert fit.chosen == len(fit.settings) - 1 and fit.settings[-1].value == (0.05, 0.5)  # the file as it is
    assert set(fit.split(len(fit.settings) - 1)) == {"fast", "balanced"}
