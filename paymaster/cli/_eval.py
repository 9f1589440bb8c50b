"""``paymaster eval GOLDEN --agent ...``: run a golden set through the runtime and report quality and cost."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from decimal import InvalidOperation
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import PaymasterError
from ._tables import make_console

if TYPE_CHECKING:
    from rich.progress import Progress

    from ..evals._golden import GoldenItem
    from ..evals._objective import Objective
    from ..evals._run import EvalReport, ItemResult
    from ..providers._replay import RecordedPrompt, ReplayProvider
    from ..providers._types import Provider
    from ..runtime import Agent, Budget, Runtime
    from ..runtime._config import Settings

# The evals, the runtime and the SDKs load when an eval command runs, not when `paymaster` starts.

console = make_console()


class _Usage(Exception):
    """A usage mistake on the command line: printed, then the command exits with status 2."""


def load_agent(spec: str) -> tuple[type[Agent], ModuleType]:
    """Import ``path/to/file.py:ClassName`` or ``module:ClassName`` and return the class and its module."""
    from .._files import load_module
    from ..runtime import Agent

    where, _, name = spec.rpartition(":")
    if not where or not name:
        raise _Usage(f"--agent must be 'path/to/file.py:ClassName' or 'module:ClassName', got {spec!r}")
    try:
        module = load_module(where.replace(os.sep, "/"), prefix="paymaster_eval")
    except FileNotFoundError:
        raise _Usage(f"--agent: file {where} does not exist") from None
    except ImportError as exc:
        raise _Usage(f"--agent: cannot import {where!r}: {exc}") from None
    found = getattr(module, name, None)
    if not (isinstance(found, type) and issubclass(found, Agent)):
        raise _Usage(f"--agent: {where} has no Agent subclass named {name!r}")
    return found, module


def _runtime(
    ledger: str | None, provider: str, replay: Path | None, config: Path | None, router: Path | None,
    module: ModuleType,
) -> tuple[Runtime, ReplayProvider | None]:
    from ..providers._replay import ReplayProvider
    from ..providers._scripted import ScriptedProvider
    from ..router._policy import load_router
    from ..runtime import Runtime

    replayer: ReplayProvider | None = None
    if replay is not None or provider == "replay":
        if replay is None:
            raise _Usage("--provider replay needs --replay FILE (recorded outcomes)")
        replayer = ReplayProvider(replay)
        runtime = Runtime(ledger=ledger, provider=replayer, tiers=replayer.tier_table(),
                          prices=replayer.price_book())
    elif provider == "scripted":
        # An example agent may script its model's replies (as `paymaster demo` does).
        reply: Callable[..., Any] | None = getattr(module, "REPLY", None)
        scripted: Provider = ScriptedProvider(reply)
        runtime = Runtime(ledger=ledger, provider=scripted, config=config)
    else:
        raise _Usage(f"--provider must be 'scripted' or 'replay', got {provider!r}")
    if router is not None:
        try:
            runtime.router = load_router(router, runtime.tiers, prices=runtime.prices)
        except PaymasterError:
            runtime.close()  # the ledger was opened for nothing
            raise
    return runtime, replayer


def _budget(usd: str) -> Budget:
    from ..runtime import Budget

    try:
        return Budget(usd=usd)
    except ValueError:
        raise _Usage(f"--budget-usd must be a number of dollars >= 0 such as 2.50, got {usd!r}") from None


def _report_json(report: EvalReport) -> dict[str, Any]:
    s = report.summary

    def money(v: Any) -> str | None:
        return None if v is None else str(v)

    return {
        "agent": report.agent, "golden": report.golden,
        "summary": {"items": s.items, "correct": s.correct, "accuracy": s.accuracy, "cost_usd": money(s.cost_usd),
                    "cost_per_success_usd": money(s.cost_per_success_usd)},
        "tiers": {t: {"items": x.items, "correct": x.correct, "cost_usd": money(x.cost_usd)}
                  for t, x in report.tier_split()},
        "items": [{"id": r.item.id, "task_id": r.task_id, "status": r.status.value, "correct": r.correct,
                   "cost_usd": money(r.cost_usd), "tier": r.tier, "model": r.model, "detail": r.verdict.detail}
                  for r in report.results],
    }


def _progress() -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=console, transient=True)


def _record(
    runtime: Runtime, agent: type[Agent], items: list[GoldenItem], tiers: list[str] | None, tenant: str,
    replayer: ReplayProvider | None, path: Path, budget: Budget | None,
) -> None:
    import anyio

    from ..evals._metrics import summarise
    from ..evals._record import record_tiers
    from ..evals._tables import split_table
    from ..providers._replay import dump_recordings

    names = tiers or [t.name for t in runtime.tiers.tiers]
    by_tier: dict[str, list[ItemResult]] = {n: [] for n in names}
    with runtime, _progress() as progress:
        bar = progress.add_task(f"{agent.name} on {len(names)} tiers", total=len(items) * len(names))

        def advance(tier: str, result: ItemResult) -> None:
            by_tier.setdefault(tier, []).append(result)
            progress.advance(bar)

        async def go() -> list[RecordedPrompt]:
            return await record_tiers(runtime, agent, items, tiers=tiers, tenant=tenant, replay=replayer,
                                      on_result=advance, budget=budget)

        try:
            recordings = anyio.run(go)
        except PaymasterError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
    dump_recordings(recordings, path)
    rows = [(tier, summarise((r.correct for r in rs), (r.cost_usd for r in rs))) for tier, rs in by_tier.items()]
    console.print(split_table(rows, title=f"Every item on every tier ({len(items)} items)", share=False))
    for tier, results in by_tier.items():
        stopped = [r for r in results if r.status.value == "budget_exceeded"]
        if stopped:
            what = "most" if len(stopped) * 2 > len(results) else "some"
            console.print(
                f"[yellow]note:[/yellow] tier {tier!r}: {len(stopped)} of {len(results)} items stopped at a budget "
                f"cap ({stopped[0].stop_reason}), so what they cost and scored is the cap's doing, not the tier's. "
                f"Calibration leaves out a tier stopped on most items ({what} were here). Give the eval a larger "
                "budget and record again: paymaster eval ... --record FILE --budget-usd AMOUNT (above the agent's "
                "Budget.usd), or raise the runtime's limits for the eval tenant", soft_wrap=True,
            )
    console.print(f"Recorded to {path}; calibrate with: paymaster calibrate {path} --out thresholds.json")


def eval_command(
    golden: Annotated[Path, typer.Argument(help="Golden set: JSON Lines (see evals/golden/README.md).")],
    agent: Annotated[str, typer.Option("--agent", "-a", help="path/to/file.py:ClassName or module:ClassName.")],
    provider: Annotated[str, typer.Option(help="scripted (offline stand-in) or replay (recorded outcomes).")] =
    "scripted",
    replay: Annotated[Path | None, typer.Option(help="Replay file of recorded model outcomes; implies "
                                                     "--provider replay, one tier per recorded model.")] = None,
    router: Annotated[Path | None, typer.Option(help="Thresholds or policy file from paymaster calibrate.")] =
    None,
    config: Annotated[Path | None, typer.Option(help="Runtime config TOML (tiers, routes, prices).")] = None,
    ledger: Annotated[str | None, typer.Option("--ledger", "-l", help="Ledger URL or SQLite path "
                                               "(default: $PAYMASTER_LEDGER or ./paymaster.db)")] = None,
    tenant: Annotated[str, typer.Option(help="Tenant the eval tasks are recorded under.")] = "eval",
    limit: Annotated[int | None, typer.Option(help="Only the first N items.", min=1)] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the results to this JSON file.")] =
    None,
    record: Annotated[Path | None, typer.Option(help="Run every item on every tier and write the outcomes to this "
                                                     "replay file, for `paymaster calibrate`.")] = None,
    tiers: Annotated[str | None, typer.Option(help="With --record: comma-separated tier names (default: all).")] =
    None,
    budget_usd: Annotated[str | None, typer.Option("--budget-usd", help="USD cap per item's task, replacing the "
                                                   "agent's Budget.usd (e.g. to record a deep tier).")] = None,
) -> None:
    """Run a golden set through the runtime; report accuracy, cost, cost per success and the tier split."""
    import anyio

    from ..evals._golden import load_golden
    from ..evals._run import run_golden
    from ..evals._tables import failures_table, selection_table, split_table, summary_table

    try:
        budget = None if budget_usd is None else _budget(budget_usd)
        items: list[GoldenItem] = load_golden(golden)[:limit]
        agent_cls, module = load_agent(agent)
        runtime, replayer = _runtime(ledger, provider, replay, config, router, module)
    except (_Usage, PaymasterError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if record is not None:
        chosen = [t.strip() for t in tiers.split(",") if t.strip()] if tiers else None
        _record(runtime, agent_cls, items, chosen, tenant, replayer, record, budget)
        return
    with runtime, _progress() as progress:
        bar = progress.add_task(f"{agent_cls.name} on {golden.name}", total=len(items))

        def advance(_: ItemResult) -> None:
            progress.advance(bar)

        async def go() -> EvalReport:
            return await run_golden(runtime, agent_cls, items, golden=golden.name, tenant=tenant,
                                    replay=replayer, on_result=advance, budget=budget)

        report = anyio.run(go)
        ledger_url = runtime.ledger.url
    console.print(summary_table(report))
    console.print(split_table(report.tier_split()))
    console.print(selection_table(report.selection()))
    if report.failures():
        console.print(failures_table(report.failures()))
    if replayer is None and provider == "scripted":
        console.print("[dim]Offline run: the scripted provider stands in for every model, so accuracy measures the "
                      "stand-in, not a model; costs are what the same tokens would cost on each tier.[/dim]")
    if json_out is not None:
        json_out.write_text(json.dumps(_report_json(report), indent=2) + "\n", encoding="utf-8")
        console.print(f"Results written to {json_out}")
    console.print(f"Every task is in the ledger {ledger_url} (tenant {tenant!r}): paymaster ledger show <task>")


def calibrate_command(
    records: Annotated[Path | None, typer.Argument(help="Replay file: recorded outcomes per tier (paymaster eval "
                                                        "--record).")] = None,
    out: Annotated[Path | None, typer.Option(help="Router file to write (a learned index is written beside it); "
                                                  "default thresholds.json, and with --refit it must be named.")
                   ] = None,
    target: Annotated[str, typer.Option(help="Share of the reference's accuracy (quality) or cost (cost).")] = "0.95",
    objective: Annotated[str, typer.Option(help="quality: cheapest setting reaching the target; cost: most accurate "
                                                "setting within it.")] = "quality",
    reference: Annotated[str | None, typer.Option(help="Reference tier (default: the most accurate).")] = None,
    scorer: Annotated[str, typer.Option(help="knn (learned from the recordings) or length.")] = "knn",
    embedder: Annotated[str, typer.Option(help="hashing-1024 (numpy only) or all-MiniLM-L6-v2 (cache extra).")] =
    "hashing-1024",
    plot: Annotated[Path | None, typer.Option(help="Also draw the cost-quality curve to this PNG.")] = None,
    tiers: Annotated[str | None, typer.Option(help="Comma-separated tiers to route between, cheapest first "
                                                   "(default: every recorded one, by list price).")] = None,
    delta: Annotated[float, typer.Option(help="The target must hold on unseen items with probability >= 1 - delta; "
                                              "0 compares point estimates only.", min=0, max=0.5)] = 0.1,
    config: Annotated[Path | None, typer.Option(help="Runtime config TOML whose tiers and prices order the tiers "
                                                     "(default: the default tiers and price book).")] = None,
    router: Annotated[str, typer.Option(help="score (thresholds on a difficulty score), utility (the best tier or "
                                             "cascade per prompt) or cascade (one cascade for all).")] = "score",
    from_ledger: Annotated[str | None, typer.Option(help="Instead of a replay file: check the target on the shadow "
                                                         "evaluation records in this ledger (exit 1 if it fails).")
                           ] = None,
    refit: Annotated[Path | None, typer.Option(help="With --from-ledger: re-fit this thresholds or policy file on "
                                                    "the shadow records it routed and write it to --out. Shadow "
                                                    "records only say whether a cheaper tier matched the reference, "
                                                    "so a re-fit only moves work toward the reference (lower "
                                                    "thresholds, a lower price of accuracy, or every subtask to the "
                                                    "reference): the cheapest such setting certified at --delta.")
                     ] = None,
    agent: Annotated[str | None, typer.Option(help="With --from-ledger: only this agent's subtasks.")] = None,
    since: Annotated[str | None, typer.Option(help="With --from-ledger: only records since 7d, 24h or a date.")
                     ] = None,
) -> None:
    """Calibrate a router on recorded outcomes and write the file Runtime(router=...) loads; or check it on live
    traffic (--from-ledger), and re-fit it there (--from-ledger LEDGER --refit FILE --out NEW)."""
    if from_ledger is not None or records is None:
        _from_ledger(from_ledger, records, target, delta, agent, since, refit, out)
        return
    if refit is not None:
        console.print("[red]error:[/red] --refit re-fits a router file on shadow records: give --from-ledger LEDGER")
        raise typer.Exit(2)
    out = out or Path("thresholds.json")
    from ..evals._plot import curve_points, plot_cost_quality
    from ..evals._record import calibrate_file
    from ..evals._tables import split_table
    from ..router._prices import RoutingWarning

    if router in ("utility", "cascade"):
        _calibrate_policy(records, out, target, objective, reference, embedder, tiers, delta, config, router)
        return
    try:
        goal, ladder, settings = _calibration_inputs(objective, target, reference, delta, tiers, config)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RoutingWarning)
            calibration = calibrate_file(records, objective=goal, scorer=scorer, embedder=embedder, tiers=ladder,
                                         table=settings.tiers, prices=settings.prices)
        written = calibration.write(out)
    except (_Usage, PaymasterError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    for warning in caught:
        console.print(f"[yellow]warning:[/yellow] {warning.message}", soft_wrap=True)
    ref = calibration.reference
    rows = [(f"{s.name} (every item)", s.summary) for s in calibration.singles]
    rows.append((f"score router ({calibration.scorer_kind})", calibration.train.summary))
    console.print(split_table(rows, title=f"Calibration on {records.name} (leave-one-out for knn)", label="policy",
                              share=False))
    console.print(calibration.describe(), soft_wrap=True)
    console.print(f"Thresholds written to {written}; load them with Runtime(router={str(written)!r})")
    if plot is not None:
        scale = float(ref.summary.cost_usd or 1)
        singles = {t: (float(s.cost_usd or 0) / scale, s.accuracy) for t, s in rows[:-1]}
        chosen = calibration.train.summary
        plot_cost_quality(plot, singles=singles, curves={"swept thresholds": curve_points(calibration.curve, scale)},
                          chosen={"chosen": (float(chosen.cost_usd or 0) / scale, chosen.accuracy)},
                          title=f"Calibration on {records.name}", reference=ref.name)
        console.print(f"Cost-quality curve drawn to {plot}")


def _from_ledger(
    ledger: str | None, records: Path | None, target: str, delta: float, agent: str | None, since: str | None,
    refit: Path | None, out: Path | None,
) -> None:
    from ._report import _Usage as _WhenUsage
    from ._report import parse_when
    from ._shadow import calibrate_from_ledger

    if (ledger is None) == (records is None):
        console.print("[red]error:[/red] give a replay file to calibrate on, or --from-ledger LEDGER to check the "
                      "target on shadow-evaluated live traffic (not both)")
        raise typer.Exit(2)
    assert ledger is not None
    try:
        start = None if since is None else parse_when(since)
    except _WhenUsage as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    calibrate_from_ledger(ledger, target, delta, agent, start, refit=refit, out=out)


def _calibration_inputs(
    objective: str, target: str, reference: str | None, delta: float, tiers: str | None, config: Path | None,
) -> tuple[Objective, list[str] | None, Settings]:
    """The objective, the tiers asked for and the runtime settings (tiers, prices) of a calibrate command."""
    from ..evals._objective import Objective
    from ..runtime._config import Settings

    if objective not in ("quality", "cost"):
        raise _Usage(f"--objective must be 'quality' or 'cost', got {objective!r}")
    try:
        goal = (Objective.quality if objective == "quality" else Objective.cost)(target, reference, delta=delta or None)
    except InvalidOperation:
        raise _Usage(f"--target must be a number such as 0.95, got {target!r}") from None
    ladder = [t.strip() for t in tiers.split(",") if t.strip()] if tiers else None
    settings = Settings.resolve(config=config, tiers=None, routes=None, prices=None, limits=None, tag_keys=None)
    return goal, ladder, settings


def _calibrate_policy(
    records: Path, out: Path, target: str, objective: str, reference: str | None, embedder: str, tiers: str | None,
    delta: float, config: Path | None, router: str,
) -> None:
    """``paymaster calibrate --router utility|cascade``: write a policy file."""
    from ..evals._record import calibrate_policy_file
    from ..evals._tables import split_table
    from ..router._prices import RoutingWarning

    try:
        goal, ladder, settings = _calibration_inputs(objective, target, reference, delta, tiers, config)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RoutingWarning)
            written, calibration = calibrate_policy_file(
                records, out, router=router, objective=goal, embedder=embedder, tiers=ladder,
                table=settings.tiers, prices=settings.prices)
    except (_Usage, PaymasterError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    for warning in caught:
        console.print(f"[yellow]warning:[/yellow] {warning.message}", soft_wrap=True)
    label = "utility router (leave-one-out)" if router == "utility" else "cascade"
    rows = [(calibration.reference.name + " (reference, every item)", calibration.reference.summary),
            (label, calibration.train.summary)]
    console.print(split_table(rows, title=f"Calibration on {records.name}", label="policy", share=False))
    if calibration.choice is not None and calibration.objective is not None:
        console.print(calibration.choice.describe(calibration.objective), soft_wrap=True)
    console.print(f"Policy written to {written}; load it with Runtime(router={str(written)!r})")
