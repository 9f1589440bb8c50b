"""Many tasks at once: wall time against the plan's critical path, event-loop lag, memory, caps.

1,000 tasks of 5 subtasks each (4 independent, then 1 joining them) run at
once against a scripted provider with 200 ms latency (which, like the peer's
fake model, keeps no record of its calls); the critical path of a
plan is 2 x 200 ms. A ticker task measures how late the event loop wakes it
(its lag) while the tasks run, and the interpreter's garbage-collection pauses
are added up. A first run is the floor: the same plans through anyio task
groups that only sleep the latency (no Paymaster), what the event loop alone
costs on this machine. Then three Paymaster runs: no cap; a tenant day cap of
1.2x what the work costs (every task should succeed); and of 0.5x (no
overshoot: spend stays under the cap). A last run is a peer's: the same plans through
the OpenAI Agents SDK (``Runner.run`` on a fake model with the same latency,
four calls at once and then the join), which keeps no ledger and reserves
nothing.

    python bench/concurrency.py --tasks 1000 --markdown bench/out/results.md
"""

from __future__ import annotations

import argparse
import gc
import resource
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
from overhead import openai_fake_agent  # bench/ is on the path: this script runs from there

from paymaster import Agent, Budget, Complexity, Limit, Plan, Runtime, ScriptedProvider, Subtask, Usage
from paymaster._money import from_picos

LATENCY = 0.2
USAGE = Usage(input_tokens=200, output_tokens=50)


class Fanout(Agent):
    name = "fanout"
    fixed_plan = Plan(subtasks=[
        *(Subtask(id=f"part{i}", goal=f"Part {i} of the job.", complexity=Complexity.SIMPLE) for i in range(4)),
        Subtask(id="join", goal="Join the parts.", complexity=Complexity.SIMPLE,
                depends_on=[f"part{i}" for i in range(4)]),
    ])

    def aggregate(self, input: str, outputs: Mapping[str, str]) -> str | None:
        return outputs["join"]


class FanoutAuto(Fanout):
    name = "fanout-auto"
    max_tokens = "auto"  # holds sized by the replies seen, not by the tier's max_tokens


async def ticker(lags: list[float], stop: anyio.Event) -> None:
    interval = 0.01
    while not stop.is_set():
        started = time.perf_counter()
        await anyio.sleep(interval)
        lags.append(time.perf_counter() - started - interval)


class GcPauses:
    """The interpreter's garbage-collection pauses while it is installed: their total and the longest."""

    def __init__(self) -> None:
        self.total = self.longest = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            pause = time.perf_counter() - self._started
            self.total += pause
            self.longest = max(self.longest, pause)


async def burst(task: Callable[[int], Awaitable[None]], tasks: int) -> tuple[float, float, GcPauses]:
    """Start ``tasks`` tasks at once and wait for them all: wall time, the loop's lag p99 meanwhile, GC pauses."""
    lags: list[float] = []
    stop = anyio.Event()
    started = time.perf_counter()
    pauses = GcPauses()
    gc.callbacks.append(pauses)
    async with anyio.create_task_group() as outer:
        outer.start_soon(ticker, lags, stop)
        async with anyio.create_task_group() as tg:
            for i in range(tasks):
                tg.start_soon(task, i)
        wall = time.perf_counter() - started
        stop.set()
    gc.callbacks.remove(pauses)
    lags.sort()
    return wall, lags[int(0.99 * (len(lags) - 1))], pauses


async def one_run(ledger: Path, tasks: int, cap: Decimal | None, agent: type[Agent] = Fanout) -> dict[str, object]:
    limits = [Limit("tenant:acme", day=Budget(usd=str(cap)))] if cap is not None else []
    provider = ScriptedProvider(lambda request: "ok", usage=USAGE, latency=LATENCY, record=False)  # keeps no calls
    with Runtime(ledger=ledger, provider=provider, limits=limits) as rt:
        outcomes = []

        async def task(i: int) -> None:
            outcomes.append(await rt.run(agent, f"Job {i}.", tenant="acme"))

        wall, lag_p99, pauses = await burst(task, tasks)
        spent = sum((o.cost_usd or Decimal(0)) for o in outcomes)
        day = next((a for a in (rt.ledger.account(f"tenant:acme:day:{time.strftime('%Y-%m-%d', time.gmtime())}"),)
                    if a is not None), None)
    return {
        "wall": wall, "critical": 2 * LATENCY, "lag_p99_ms": lag_p99 * 1000,
        "succeeded": sum(o.status.value == "succeeded" for o in outcomes), "spent": spent,
        "account_spent": None if day is None else from_picos(day.spent_picos), "cap": cap,
        "gc_s": pauses.total, "gc_longest_ms": pauses.longest * 1000,
    }


async def floor_run(tasks: int) -> dict[str, object]:
    """The same plan shape with nothing but the event loop: four sleeps of the latency at once, then one."""

    async def task(i: int) -> None:
        async with anyio.create_task_group() as parts:
            for _ in range(4):
                parts.start_soon(anyio.sleep, LATENCY)
        await anyio.sleep(LATENCY)

    wall, lag_p99, pauses = await burst(task, tasks)
    return {"wall": wall, "critical": 2 * LATENCY, "lag_p99_ms": lag_p99 * 1000, "succeeded": tasks, "spent": None,
            "account_spent": None, "cap": None, "gc_s": pauses.total, "gc_longest_ms": pauses.longest * 1000}


async def peer_run(agent: Any, tasks: int) -> dict[str, object]:
    """The same plan shape through the OpenAI Agents SDK: four parts at once, then the join; no ledger."""
    from agents import Runner

    async def task(i: int) -> None:
        async with anyio.create_task_group() as parts:
            for p in range(4):
                parts.start_soon(Runner.run, agent, f"Part {p} of job {i}.")
        await Runner.run(agent, f"Join the parts of job {i}.")

    wall, lag_p99, pauses = await burst(task, tasks)
    return {"wall": wall, "critical": 2 * LATENCY, "lag_p99_ms": lag_p99 * 1000, "succeeded": tasks, "spent": None,
            "account_spent": None, "cap": None, "gc_s": pauses.total, "gc_longest_ms": pauses.longest * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--gc-freeze", action="store_true",
                        help="call gc.freeze() once the modules are loaded, as a long-running service may")
    args = parser.parse_args()
    if args.gc_freeze:
        gc.collect()
        gc.freeze()  # what start-up loaded is never walked again by the collector
    rows = ["| run | wall s | x critical path | loop lag p99 ms | GC s (longest ms) | succeeded | spent | cap |",
            "|---|---|---|---|---|---|---|---|"]
    runs = {"floor: anyio task groups that only sleep, no Paymaster": anyio.run(floor_run, args.tasks)}
    with tempfile.TemporaryDirectory() as tmp:
        base = anyio.run(one_run, Path(tmp) / "free.db", args.tasks, None)
        work = base["spent"]
        assert isinstance(work, Decimal)
        runs["no cap"] = base
        for factor in (Decimal("1.2"), Decimal("0.5")):
            runs[f"tenant cap {factor}x the work"] = anyio.run(one_run, Path(tmp) / f"cap{factor}.db", args.tasks,
                                                               (work * factor).quantize(Decimal("0.000001")))
        # The same 1.2x cap with max_tokens = "auto": the ledger has this agent's replies from a first run.
        auto_db = Path(tmp) / "auto.db"
        anyio.run(one_run, auto_db, 10, None, FanoutAuto)
        runs["tenant cap 1.2x, max_tokens auto"] = anyio.run(
            one_run, auto_db, args.tasks, (work * Decimal("1.2")).quantize(Decimal("0.000001")), FanoutAuto
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Paymaster's runs only
    peer = openai_fake_agent(LATENCY, USAGE.input_tokens, USAGE.output_tokens)
    if peer is None:
        print("skipped the OpenAI Agents SDK run: not installed (pip install -e '.[bench]')")
    else:
        runs["peer: OpenAI Agents SDK, no ledger, no cap"] = anyio.run(peer_run, peer, args.tasks)
    for name, r in runs.items():
        wall, critical = float(r["wall"]), float(r["critical"])  # type: ignore[arg-type]
        rows.append(f"| {name} | {wall:.2f} | {wall / critical:.2f} | {float(r['lag_p99_ms']):.1f} | "  # type: ignore[arg-type]
                    f"{float(r['gc_s']):.2f} ({float(r['gc_longest_ms']):.0f}) | "  # type: ignore[arg-type]
                    f"{r['succeeded']}/{args.tasks} | {_usd(r['account_spent'] or r['spent'])} | "
                    f"{'-' if r['cap'] is None else '$' + str(r['cap'])} |")
    table = "\n".join(rows) + f"\n\nPeak RSS of Paymaster's runs {peak_mb:.0f} MB."
    print(table)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        with args.markdown.open("a") as out:
            out.write(f"\n### {args.tasks} tasks x 5 subtasks, {LATENCY * 1000:.0f} ms provider latency\n\n{table}\n")


def _usd(value: object) -> str:
    return "-" if value is None else f"${value}"


if __name__ == "__main__":
    main()
