"""What a rate limit costs a task: the same one-call tasks with and without a rate on their agent, in one process.

The rate (a million calls and a trillion tokens a minute) never binds, so the
difference is the admission itself: one more ledger transaction per call (count
the key's window, insert a row). Tasks run one after another and as a
concurrent burst; rounds alternate the two agents so machine noise hits both.
Prints ms per task (best of the rounds) and the ratio rated / unrated.

    python bench/rates.py --tasks 300 --rounds 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import anyio

from paymaster import Agent, Rate, Runtime, ScriptedProvider, Usage


class Free(Agent):
    name = "free"


class Rated(Agent):
    name = "rated"
    rate = Rate(calls_per_minute=1_000_000, tokens_per_minute=10**12)


async def _burst(rt: Runtime, agent: type[Agent], n: int) -> None:
    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(rt.run, agent, f"job {i}")


async def _one_by_one(rt: Runtime, agent: type[Agent], n: int) -> None:
    for i in range(n):
        await rt.run(agent, f"job {i}")


def main() -> None:
    """Time both agents, sequential and concurrent, and print ms per task and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    provider = ScriptedProvider(usage=Usage(input_tokens=20, output_tokens=5))
    with tempfile.TemporaryDirectory() as folder, Runtime(ledger=Path(folder) / "l.db", provider=provider) as rt:
        for label, shape in (("one by one", _one_by_one), ("concurrent burst", _burst)):
            best: dict[str, float] = {}
            for _ in range(args.rounds):
                for agent in (Free, Rated):
                    started = time.perf_counter()
                    anyio.run(shape, rt, agent, args.tasks)
                    took = (time.perf_counter() - started) * 1000 / args.tasks
                    best[agent.name] = min(best.get(agent.name, took), took)
            print(f"{label}, {args.tasks} tasks: no rate {best['free']:.2f} ms/task, rated {best['rated']:.2f} "
                  f"ms/task, ratio {best['rated'] / best['free']:.2f}")


if __name__ == "__main__":
    main()
