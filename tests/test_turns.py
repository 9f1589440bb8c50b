"""Turns: a burst of ready tasks is let through a few per event-loop pass, in arrival order."""

from __future__ import annotations

import asyncio

import anyio
import anyio.lowlevel
import pytest

from paymaster.executors._turns import Turns


def test_a_burst_goes_through_a_few_per_pass_in_arrival_order() -> None:
    async def main() -> tuple[list[int], list[int]]:
        turns = Turns(per_pass=3)
        passes = 0
        order: list[int] = []
        seen_in_pass: list[int] = []

        async def count_passes() -> None:
            nonlocal passes
            while len(order) < 10:
                passes += 1
                await asyncio.sleep(0)

        async def section(i: int) -> None:
            await turns.take()
            order.append(i)
            seen_in_pass.append(passes)

        counter = asyncio.ensure_future(count_passes())
        await asyncio.gather(*(section(i) for i in range(10)))
        await counter
        return order, seen_in_pass

    order, seen = asyncio.run(main())
    assert order == list(range(10))  # first come, first served
    per_pass = {p: seen.count(p) for p in set(seen)}
    assert max(per_pass.values()) <= 3 and len(per_pass) >= 4  # 10 sections need at least 4 passes


def test_a_waiter_cancelled_gives_its_place_up() -> None:
    async def main() -> list[str]:
        turns = Turns(per_pass=1)
        done: list[str] = []

        async def section(name: str) -> None:
            await turns.take()
            done.append(name)

        first = asyncio.ensure_future(section("first"))
        second = asyncio.ensure_future(section("second"))
        third = asyncio.ensure_future(section("third"))
        await asyncio.sleep(0)  # all three asked; only the first got this pass's turn
        second.cancel()
        await asyncio.gather(first, third, return_exceptions=True)
        with pytest.raises(asyncio.CancelledError):
            await second
        return done

    assert asyncio.run(main()) == ["first", "third"]


def test_a_shielded_turn_is_not_dropped_by_a_cancellation() -> None:
    async def main(shielded: bool) -> list[str]:
        turns = Turns(per_pass=1)
        done: list[str] = []
        scope = anyio.CancelScope()

        async def section(name: str, cancellable: bool) -> None:
            with scope if cancellable else anyio.CancelScope():
                await turns.take(shielded=shielded and cancellable)
                done.append(name)  # work that must happen although its scope was cancelled

        async with anyio.create_task_group() as tg:
            for name in ("a", "b", "c"):  # one turn per pass: "c" waits two passes
                tg.start_soon(section, name, name == "c")
            await anyio.lowlevel.checkpoint()
            await anyio.lowlevel.checkpoint()
            scope.cancel()  # while "c" still waits for its turn
        return done

    assert asyncio.run(main(shielded=True)) == ["a", "b", "c"]
    assert asyncio.run(main(shielded=False)) == ["a", "b"]


def test_a_heavy_section_uses_up_as_many_turns_as_it_weighs() -> None:
    async def main() -> list[int]:
        turns = Turns(per_pass=4)
        passes = 0
        seen: dict[str, int] = {}

        async def count_passes() -> None:
            nonlocal passes
            while len(seen) < 6:
                passes += 1
                await asyncio.sleep(0)

        async def section(name: str, weight: int) -> None:
            await turns.take(weight=weight)
            seen[name] = passes

        counter = asyncio.ensure_future(count_passes())
        # Two starts weighing 4 turns each, then four light sections: one start per pass, then the light ones.
        await asyncio.gather(section("start1", 4), section("start2", 4),
                             *(section(f"call{i}", 1) for i in range(4)))
        await counter
        return [seen[n] for n in ("start1", "start2", "call0", "call1", "call2", "call3")]

    start1, start2, *calls = asyncio.run(main())
    assert start1 < start2 < calls[0]  # each start took a whole pass's turns; order kept
    assert len(set(calls)) == 1  # the four light sections fit one pass together
