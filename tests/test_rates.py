"""Rate limits: a burst over a per-minute rate is spread out, never passes the rate in any window, loses nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from sqlmodel import select

from paymaster import Agent, ConfigurationError, Limit, Rate, Runtime, ScriptedProvider, TaskStatus, Usage
from paymaster.ledger import AccountRecord, Ledger
from paymaster.ledger._tables import RateAdmissionRecord

pytestmark = pytest.mark.ledgers  # every ledger_path test runs on a SQLite file and on PostgreSQL

USAGE = Usage(input_tokens=20, output_tokens=5)


class FakeClock:
    """Wall time that moves only when a waiting call sleeps: a minute passes in no time.

    With ``arrivals``, time stands still until that many calls have reached the rate gate, as
    it does in real time when a burst arrives within milliseconds.
    """

    def __init__(self, arrivals: int = 0) -> None:
        self.now = 1_800_000_000.0
        self.arrivals = arrivals
        self.arrived = 0
        self.all_arrived = anyio.Event()
        self.admitted: list[float] = []  # when calls got through the gate

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if self.arrived < self.arrivals:
            await self.all_arrived.wait()
        self.now += seconds
        await anyio.lowlevel.checkpoint()


class Burst(Agent):
    name = "burst"
    rate = Rate(calls_per_minute=5)


def _rated(ledger: Path | str, clock: FakeClock, rate_wait: float, provider: ScriptedProvider | None = None,
           **kwargs: object) -> Runtime:
    provider = provider or ScriptedProvider(usage=USAGE)
    rt = Runtime(ledger=ledger, provider=provider, rate_wait=rate_wait, **kwargs)  # type: ignore[arg-type]
    rt.rates.clock, rt.rates.sleep = clock, clock.sleep
    admit = rt.rates.admit

    async def counted(*args: Any) -> Any:
        clock.arrived += 1
        if clock.arrived == clock.arrivals:
            clock.all_arrived.set()
        refused = await admit(*args)
        if refused is None:
            clock.admitted.append(clock.now)
        return refused

    rt.rates.admit = counted  # type: ignore[method-assign]
    return rt


def _admissions(ledger: Ledger, key: str) -> list[float]:
    with ledger.session() as s:
        rows = s.exec(select(RateAdmissionRecord).where(RateAdmissionRecord.key == key)).all()
    return sorted(r.at for r in rows)


def _most_in_any_window(times: list[float], window: float = 60.0) -> int:
    """The most admissions any window [t, t + window) holds (the fullest windows start at an admission)."""
    return max(sum(1 for u in times if t <= u < t + window) for t in times)


def test_a_burst_over_a_per_minute_rate_is_spread_out_and_nothing_is_lost(ledger_path: Path) -> None:
    clock = FakeClock(arrivals=23)
    with _rated(ledger_path, clock, rate_wait=3600) as rt:

        async def burst() -> list[TaskStatus]:
            statuses: list[TaskStatus] = []

            async def one(i: int) -> None:
                statuses.append((await rt.run(Burst, f"job {i}")).status)

            async with anyio.create_task_group() as tg:
                for i in range(23):
                    tg.start_soon(one, i)
            return statuses

        started = clock.now
        statuses = anyio.run(burst)
        times = _admissions(rt.ledger, "agent:burst")
        ok = [s for t in rt.ledger.tasks(limit=100) for s in rt.ledger.steps(t.id) if s.status == "ok"]
    assert statuses == [TaskStatus.SUCCEEDED] * 23  # every call was made, none dropped
    assert len(times) == len(ok) == 23
    assert _most_in_any_window(times) == 5
    # 23 calls at 5 a minute: the last four minutes into the burst, not sooner.
    assert times[-1] - started == pytest.approx(4 * 60)


def test_a_minute_and_an_hour_limit_both_hold(ledger_path: Path) -> None:
    class Hourly(Agent):
        name = "hourly"
        rate = Rate(calls_per_minute=5, calls_per_hour=7)

    clock = FakeClock(arrivals=8)
    with _rated(ledger_path, clock, rate_wait=4000) as rt:

        async def eight() -> None:
            async with anyio.create_task_group() as tg:
                for i in range(8):
                    tg.start_soon(rt.run, Hourly, f"job {i}")

        started = clock.now
        anyio.run(eight)
        kept = [t - started for t in _admissions(rt.ledger, "agent:hourly")]
        statuses = {t.status for t in rt.ledger.tasks(limit=20)}
    # Five at once, two more a minute later (the hour's seventh), the eighth an hour after the first.
    assert [t - started for t in clock.admitted] == pytest.approx([0, 0, 0, 0, 0, 60, 60, 3600])
    assert statuses == {"succeeded"}
    assert kept == pytest.approx([60, 60, 3600])  # rows out of every window were pruned as the eighth went


def test_a_call_waits_its_turn_then_ends_the_task_as_rate_limited(ledger_path: Path) -> None:
    class Slow(Agent):
        name = "slow"
        rate = Rate(calls_per_minute=1)

    clock = FakeClock(arrivals=3)
    with _rated(ledger_path, clock, rate_wait=90) as rt:

        async def three() -> list[tuple[TaskStatus, str | None, str]]:
            outcomes = []

            async def one(i: int) -> None:
                o = await rt.run(Slow, f"job {i}")
                outcomes.append((o.status, o.stop_reason, o.task_id))

            async with anyio.create_task_group() as tg:
                for i in range(3):
                    tg.start_soon(one, i)
            return outcomes

        outcomes = anyio.run(three)
        # The first goes at once, the second a minute later; the third could only go after two
        # minutes, past its 90 s wait: it stops, and says why.
        assert [o[0] for o in outcomes] == [TaskStatus.SUCCEEDED, TaskStatus.SUCCEEDED, TaskStatus.RATE_LIMITED]
        _, reason, task_id = outcomes[2]
        assert reason is not None and reason.startswith("rate_limited: agent:slow allows 1 calls per minute")
        (refused,) = rt.ledger.steps(task_id)
        assert refused.status == "refused" and refused.error == reason and refused.cost_picos == 0
        assert rt.ledger.task(task_id).status == "rate_limited"  # type: ignore[union-attr]
        with rt.ledger.session() as s:  # its hold was released: nothing stays reserved
            assert all(a.reserved_picos == a.reserved_calls == 0 for a in s.exec(select(AccountRecord)).all())
        assert len(_admissions(rt.ledger, "agent:slow")) == 2


def test_a_call_larger_than_the_rate_stops_at_once_with_what_to_change(ledger_path: Path) -> None:
    clock = FakeClock()
    limits = [Limit("tenant:acme", rate=Rate(tokens_per_minute=100))]  # a call holds up to its max_tokens
    with _rated(ledger_path, clock, rate_wait=3600, limits=limits) as rt:
        outcome = rt.run_sync(Burst, "hello", tenant="acme")
    assert outcome.status is TaskStatus.RATE_LIMITED
    assert outcome.stop_reason is not None and "more than the rate of tenant:acme allows" in outcome.stop_reason
    assert clock.now == 1_800_000_000.0  # it did not wait for room that can never come


def test_a_tool_rate_holds_across_agents(ledger_path: Path) -> None:
    from paymaster import ModelResponse, tool
    from paymaster.providers import ToolCall

    @tool(rate=Rate(calls_per_minute=2))
    def search(query: str) -> str:
        """Search."""
        return "found"

    class Searcher(Agent):
        name = "searcher"
        tools = [search]  # noqa: RUF012

    asks = [ModelResponse(text="", usage=USAGE, model="m", tool_calls=(ToolCall(id=f"c{i}", name="search",
                                                                                  arguments={"query": "q"}),))
            for i in range(3)]
    clock = FakeClock()
    with _rated(ledger_path, clock, rate_wait=3600, provider=ScriptedProvider([*asks, "done"], usage=USAGE)) as rt:
        outcome = rt.run_sync(Searcher, "find it")
        times = _admissions(rt.ledger, "tool:search")
    assert outcome.status is TaskStatus.SUCCEEDED
    assert len(times) == 3 and times[2] - times[0] == pytest.approx(60)  # the third search waited a minute


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Rate(), "set at least one limit"),
        (lambda: Rate(calls_per_minute=-1), r"Rate\(calls_per_minute=...\): Input should be greater than 0"),
        (lambda: Rate(calls_per_second=5), r"Rate\(calls_per_second=...\) is not a limit"),
        (lambda: Limit("tool:search", day=None), "sets no rate="),
    ],
)
def test_bad_rates_are_rejected_with_what_to_fix(make: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make()  # type: ignore[operator]


def test_rates_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "paymaster.toml"
    config.write_text('[limits."tool:search"]\nrate = {calls_per_minute = 10}\n'
                      '[limits."tenant:acme"]\nrate = {usd_per_hour = "2.50"}\n')
    with Runtime(ledger=tmp_path / "l.db", provider=ScriptedProvider(), config=config) as rt:
        assert {k: len(v) for k, v in rt.rates.rules.items()} == {"tool:search": 1, "tenant:acme": 1}
    config.write_text('[limits."tenant:acme"]\nrate = {calls_per_minute = -5}\n')
    with pytest.raises(ConfigurationError, match=r"limits.'tenant:acme': Rate\(calls_per_minute=...\)"):
        Runtime(ledger=tmp_path / "l.db", provider=ScriptedProvider(), config=config)


WORKER = textwrap.dedent(
    """
    import sys, time
    import anyio
    from paymaster import Agent, Rate, Runtime, ScriptedProvider, Usage

    SCALE = 60.0  # both processes read the same sped-up wall clock: a minute lasts a second

    class Worker(Agent):
        name = "worker"
        rate = Rate(calls_per_minute=4)

    async def main(rt):
        async with anyio.create_task_group() as tg:
            for i in range(int(sys.argv[2])):
                tg.start_soon(rt.run, Worker, f"job {i}")

    provider = ScriptedProvider(usage=Usage(input_tokens=20, output_tokens=5))
    with Runtime(ledger=sys.argv[1], provider=provider, rate_wait=3600) as rt:
        rt.rates.clock = lambda: time.time() * SCALE
        rt.rates.sleep = lambda seconds: anyio.sleep(seconds / SCALE)
        anyio.run(main, rt)
    """
)


def test_two_processes_sharing_a_ledger_share_the_rate(ledger_path: Path) -> None:
    ledger = str(ledger_path)
    Ledger(ledger).close()  # the schema, once, before the race
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, ledger, "7"], env=env, stderr=subprocess.PIPE)
             for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    db = Ledger(ledger)
    try:
        tasks = db.tasks(limit=100)
        times = [t / 60.0 for t in _admissions(db, "agent:worker")]  # back to sped-up seconds: a minute is 1.0
    finally:
        db.close()
    assert len(tasks) == 14 and {t.status for t in tasks} == {"succeeded"}  # nothing lost
    assert len({t.owner for t in tasks}) == 2  # both processes ran tasks
    assert len(times) == 14
    assert _most_in_any_window(times, window=1.0) == 4
