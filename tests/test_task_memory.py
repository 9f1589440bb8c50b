"""A finished task leaves nothing for the garbage collector, and the first task does not load the tokenizer.

Under load the interpreter's collector is most of the event loop's lag: what a
task leaves in reference cycles waits for a collection, and a collection walks
every object alive. The runtime keeps its own garbage out of cycles, and loads
what start-up needs when it is built, not inside the first task on the loop.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping
from pathlib import Path

import anyio

from paymaster import Agent, Complexity, Plan, Runtime, ScriptedProvider, Subtask, TaskStatus, Usage
from paymaster.pricing import _tokens


class Fanout(Agent):
    name = "fanout"
    fixed_plan = Plan(subtasks=[
        *(Subtask(id=f"part{i}", goal=f"Part {i}.", complexity=Complexity.SIMPLE) for i in range(3)),
        Subtask(id="join", goal="Join the parts.", complexity=Complexity.SIMPLE,
                depends_on=[f"part{i}" for i in range(3)]),
    ])

    def aggregate(self, input: str, outputs: Mapping[str, str]) -> str | None:
        return outputs["join"]


def test_finished_tasks_leave_no_reference_cycles(ledger_path: Path) -> None:
    provider = ScriptedProvider(lambda request: "ok", usage=Usage(input_tokens=20, output_tokens=5))

    async def main() -> tuple[list[TaskStatus], int]:
        with Runtime(ledger=ledger_path, provider=provider) as rt:
            for _ in range(2):  # first uses fill caches of their own
                await rt.run(Fanout, "Warm up.")
            await rt.ledger.aflush()
            gc.collect()
            gc.disable()
            try:
                outcomes = [await rt.run(Fanout, f"Job {i}.") for i in range(5)]
                await rt.ledger.aflush()
                provider.calls.clear()  # the test double's own record of the calls
                left = gc.collect()  # what only the collector could free
            finally:
                gc.enable()
        return [o.status for o in outcomes], left

    statuses, left = anyio.run(main)
    assert statuses == [TaskStatus.SUCCEEDED] * 5
    assert left == 0


def test_the_tokenizer_loads_with_the_runtime_not_inside_the_first_task(ledger_path: Path) -> None:
    _tokens.count_tokens.cache_clear()
    _tokens._encoding.cache_clear()  # as in a fresh process (tiktoken keeps its own copy: reloading is quick)
    with Runtime(ledger=ledger_path, provider=ScriptedProvider(["ok"])):
        assert _tokens._encoding.cache_info().currsize == 1
