"""Budgets across OS processes: two processes share a cap; a process killed mid-call is recovered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import pytest
from sqlmodel import select

from paymaster import Agent, Budget, Limit, Runtime, ScriptedProvider
from paymaster._money import to_picos
from paymaster.ledger import AccountRecord, Charge, Ledger, Reservation, ReservationRecord

pytestmark = pytest.mark.ledgers  # every test runs on a SQLite file and on PostgreSQL

WORKER = textwrap.dedent(
    """
    import sys
    from paymaster import Agent, Budget, Limit, Runtime, ScriptedProvider, Usage

    class Worker(Agent):
        name = "worker"

    ledger, cap, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    provider = ScriptedProvider(usage=Usage(input_tokens=1000, output_tokens=300), latency=0.002)
    with Runtime(ledger=ledger, provider=provider, limits=[Limit("tenant:acme", day=Budget(usd=cap))]) as rt:
        for i in range(n):
            rt.run_sync(Worker, f"job {i}", tenant="acme")
    """
)


def _spawn(code: str, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stderr=subprocess.PIPE)


def test_two_processes_sharing_one_tenant_cap_never_pass_it(ledger_path: Path) -> None:
    ledger = str(ledger_path)
    Ledger(ledger).close()  # create the schema once, before the race
    cap = "0.05"  # each call costs $0.0025 and holds ~$0.0105: about 16-20 calls fit
    procs = [_spawn(WORKER, ledger, cap, "40") for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    db = Ledger(ledger)
    with db.session() as s:
        (day,) = [a for a in s.exec(select(AccountRecord)).all() if a.id.startswith("tenant:acme:day:")]
    steps = [st for t in db.tasks(limit=1000) for st in db.steps(t.id)]
    settled = sum(st.cost_picos or 0 for st in steps if st.status == "ok")
    assert day.spent_picos == settled <= to_picos(Decimal(cap))
    assert day.reserved_picos == 0
    assert {st.status for st in steps} == {"ok", "refused"}
    owners = {t.owner for t in db.tasks(limit=1000)}
    db.close()
    assert len(owners) == 2  # both processes really ran tasks


STALLER = textwrap.dedent(
    """
    import sys
    from paymaster import Agent, Budget, Complexity, Plan, Runtime, ScriptedProvider, Subtask, Usage

    class Two:
        async def plan(self, goal, ctx):
            return Plan(subtasks=(Subtask(id="a", goal=goal), Subtask(id="b", goal="next", depends_on=("a",))))

    class Worker(Agent):
        name = "worker"

    provider = ScriptedProvider(["first answer", lambda request: __import__("time").sleep(600) or "never"],
                                usage=Usage(input_tokens=1000, output_tokens=300))
    with Runtime(ledger=sys.argv[1], provider=provider, planner=Two()) as rt:
        rt.run_sync(Worker, "job", tenant="acme", budget=Budget(usd="1"))
    """
)


def test_a_process_killed_mid_call_is_recovered_at_the_next_start(ledger_path: Path) -> None:
    ledger = str(ledger_path)
    Ledger(ledger).close()
    proc = _spawn(STALLER, ledger)
    db = Ledger(ledger)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with db.session() as s:
            held = s.exec(select(ReservationRecord)).all()
        if held and held[0].subtask_id == "b":
            break
        time.sleep(0.05)
    else:
        proc.kill()
        proc.communicate()
        raise AssertionError("the worker never reached its second call")
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    (task,) = db.tasks()
    before = db.account(f"task:{task.id}")
    db.close()
    assert before is not None and before.reserved_picos > 0

    with Runtime(ledger=ledger, provider=ScriptedProvider()) as rt:  # the next start recovers
        assert rt.recovered == [task.id]
        steps = rt.ledger.steps(task.id)
        after = rt.ledger.account(f"task:{task.id}")
        tenant = rt.ledger.account("tenant:acme")
        recovered_task = rt.ledger.task(task.id)
        with rt.ledger.session() as s:
            assert s.exec(select(ReservationRecord)).all() == []
    ok, stale = steps
    assert (ok.subtask_id, ok.status) == ("a", "ok")  # the settled call is kept
    assert (stale.subtask_id, stale.status) == ("b", "unsettled")
    assert stale.note is not None and "process died mid-call" in stale.note and "may have billed" in stale.note
    assert stale.cost_picos == before.reserved_picos
    assert after is not None and after.reserved_picos == 0
    assert after.spent_picos == (ok.cost_picos or 0) + before.reserved_picos  # never less than really spent
    assert tenant is not None and tenant.spent_picos == after.spent_picos
    assert recovered_task is not None and recovered_task.status == "interrupted"
    assert recovered_task.cost_picos == after.spent_picos


def test_recovery_leaves_a_live_process_reservations_alone(ledger_path: Path) -> None:
    with Runtime(ledger=ledger_path, provider=ScriptedProvider(), limits=[
        Limit("tenant:acme", day=Budget(usd="1"))
    ]) as rt:
        rt.ledger.accounts.ensure({"task:x": None})
        held = rt.ledger.reserve(["task:x"], Charge(picos=5), task_id="x", kind="execute")
        assert isinstance(held, Reservation)
        assert rt.ledger.recover() == []
        account = rt.ledger.account("task:x")
        assert account is not None and account.reserved_picos == 5


class Worker(Agent):
    name = "worker"


HOLDER = textwrap.dedent(
    """
    import sys, time
    from paymaster import Agent, Budget, Limit, Runtime, ScriptedProvider

    class Worker(Agent):
        name = "worker"

    provider = ScriptedProvider(lambda request: time.sleep(600) or "never")
    limits = [Limit("tenant:acme", day=Budget(usd=sys.argv[2]))]
    with Runtime(ledger=sys.argv[1], provider=provider, limits=limits) as rt:
        rt.run_sync(Worker, "job", tenant="acme")
    """
)


def test_a_live_runtime_closes_a_dead_peers_holds_instead_of_waiting_on_them(ledger_path: Path) -> None:
    ledger = str(ledger_path)
    cap = "0.015"  # room for one call's worst case (~$0.0105) at a time
    with Runtime(ledger=ledger, provider=ScriptedProvider(), limits=[Limit("tenant:acme", day=Budget(usd=cap))]) as rt:
        proc = _spawn(HOLDER, ledger, cap)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with rt.ledger.session() as s:
                if s.exec(select(ReservationRecord)).all():
                    break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        outcome = rt.run_sync(Worker, "mine", tenant="acme")
        dead = next(t for t in rt.ledger.tasks() if t.id != outcome.task_id)
        (stale,) = rt.ledger.steps(dead.id)
        dead_task = rt.ledger.task(dead.id)
    # The dead peer's hold was closed at its worst case by this live runtime while it waited,
    # and what is left of the cap cannot pay for another call: a clear refusal, not a hang.
    assert stale.status == "unsettled" and stale.note is not None and "process died" in stale.note
    assert dead_task is not None and dead_task.status == "interrupted"
    assert outcome.status.value == "budget_exceeded"


CLOSING = textwrap.dedent(
    """
    import sys
    import anyio
    from paymaster import Agent, Runtime, ScriptedProvider

    class Quick(Agent):
        name = "quick"

    rt = Runtime(ledger=sys.argv[1], provider=ScriptedProvider())

    async def main():
        outcome = await rt.run(Quick, "hello")
        print(outcome.task_id)

    anyio.run(main)
    # no rt.close(): the closing row was queued without waiting, and must still be written
    """
)


def test_a_task_closed_just_before_the_process_exits_is_on_the_ledger(ledger_path: Path) -> None:
    ledger = str(ledger_path)
    Ledger(ledger).close()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", CLOSING, ledger], env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    task_id = done.stdout.decode().strip()
    db = Ledger(ledger)
    try:
        task = db.task(task_id)
        assert task is not None and task.status == "succeeded" and task.calls == 1
        assert task.cost_picos == sum(st.cost_picos or 0 for st in db.steps(task_id)) > 0
        with db.session() as s:
            assert s.exec(select(ReservationRecord)).all() == []
    finally:
        db.close()
