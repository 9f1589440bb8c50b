"""Many workers on one budget: random work and faults in four processes, a worker killed with SIGKILL on
what the ledger takes for another host, and a paused worker that comes back after it was taken for dead.
Run on a SQLite file and on PostgreSQL."""

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

from paymaster._money import to_picos
from paymaster.ledger import AccountRecord, Ledger, ReservationRecord, StepRecord, TaskRecord

pytestmark = pytest.mark.ledgers  # every test runs on a SQLite file and on PostgreSQL

HEARTBEAT = "1.5"  # seconds: short, so that a dead worker is noticed within the test

RANDOM_WORKER = textwrap.dedent(
    """
    import random, sys, time
    from paymaster import Agent, Budget, Limit, ModelResponse, RetryPolicy, Runtime, ScriptedProvider, Usage
    from paymaster.errors import ProviderTimeoutError, RateLimitError, ConnectionFailedError
    from paymaster.ledger import Ledger

    class Worker(Agent):
        name = "worker"

    url, cap, n, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)

    def reply(request):
        time.sleep(rng.choice((0, 0, 0.001, 0.005)))
        fault = rng.random()
        if fault < 0.15:
            raise ProviderTimeoutError("read timed out", provider="scripted")  # may be billed: worst case
        if fault < 0.2:
            raise RateLimitError("429", provider="scripted", retry_after=0)  # not billed
        if fault < 0.25:
            raise ConnectionFailedError("refused", provider="scripted")  # nothing sent
        usage = Usage(input_tokens=rng.randint(10, 3000), output_tokens=rng.randint(1, request.max_tokens or 500))
        return ModelResponse(text="done", usage=usage, model=request.model)

    ledger = Ledger(url, heartbeat_seconds=float(sys.argv[5]), leases=sys.argv[6] == "leases")
    limits = [Limit("tenant:acme", day=Budget(usd=cap))]
    retry = RetryPolicy(max_attempts=2, initial_wait=0)
    with Runtime(ledger=ledger, provider=ScriptedProvider(reply), limits=limits, retry=retry, budget_wait=2) as rt:
        for i in range(n):
            rt.run_sync(Worker, f"job {i} " + "words " * rng.randint(1, 400), tenant="acme",
                        budget=Budget(usd=rng.choice(("0.02", "0.05", "1"))))
    ledger.close()
    """
)

# A worker whose ledger believes it runs on another host, so that only its heartbeat can tell it is gone.
ELSEWHERE = textwrap.dedent(
    """
    import sys, time
    import paymaster.ledger._accounts as accounts, paymaster.ledger._liveness as liveness
    accounts.HOST = liveness.HOST = "another-host"
    from paymaster import Agent, Budget, Limit, Plan, Runtime, ScriptedProvider, Subtask, Usage
    from paymaster.ledger import Ledger

    class Steps:
        async def plan(self, goal, ctx):
            return Plan(subtasks=(Subtask(id="a", goal=goal), Subtask(id="b", goal="next", depends_on=("a",)),
                                  Subtask(id="c", goal="last", depends_on=("b",))))

    class Worker(Agent):
        name = "worker"

    url, stall = sys.argv[1], float(sys.argv[3])
    provider = ScriptedProvider(["first answer", lambda request: time.sleep(stall) or "late answer"],
                                usage=Usage(input_tokens=1000, output_tokens=300))
    ledger = Ledger(url, heartbeat_seconds=float(sys.argv[2]), leases=sys.argv[4] == "leases")
    with Runtime(ledger=ledger, provider=provider, planner=Steps(),
                 limits=[Limit("tenant:acme", day=Budget(usd="1"))]) as rt:
        rt.run_sync(Worker, "job", tenant="acme", budget=Budget(usd="1"))
    ledger.close()
    """
)


def _spawn(code: str, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stderr=subprocess.PIPE)


def _wait_for(db: Ledger, found: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(found) and found():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _held(db: Ledger) -> list[ReservationRecord]:
    with db.session() as s:
        return list(s.exec(select(ReservationRecord)).all())


def _tenant_day(db: Ledger) -> AccountRecord:
    with db.session() as s:
        (day,) = [a for a in s.exec(select(AccountRecord)).all() if a.id.startswith("tenant:acme:day:")]
    return day


def _all_steps(db: Ledger) -> list[StepRecord]:
    with db.session() as s:
        return list(s.exec(select(StepRecord)).all())


@pytest.mark.parametrize("holds", ["rows", "leases"])
def test_four_workers_with_random_work_and_faults_never_pass_the_tenant_cap(ledger_path: Path, holds: str) -> None:
    url = str(ledger_path)
    Ledger(url).close()
    cap = "0.5"
    procs = [_spawn(RANDOM_WORKER, url, cap, "25", str(seed), HEARTBEAT, holds) for seed in range(4)]
    time.sleep(1.0)
    os.kill(procs[3].pid, signal.SIGKILL)  # one worker dies wherever it is, maybe mid-call
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode in (0, -signal.SIGKILL), err.decode()
    db = Ledger(url)
    db.recover()  # whatever the killed worker still held is closed at its worst case now
    day, steps = _tenant_day(db), _all_steps(db)
    db.close()
    assert day.reserved_picos == 0
    assert day.spent_picos <= to_picos(Decimal(cap))
    # Spend is exactly what the rows say: settled costs, plus worst cases for calls that may have been billed.
    assert day.spent_picos == sum(st.cost_picos or 0 for st in steps)
    assert {st.status for st in steps} <= {"ok", "error", "refused", "unsettled"}
    assert {"ok", "unsettled"} <= {st.status for st in steps}  # the faults really happened


def test_a_worker_killed_on_another_host_is_closed_by_a_live_worker_once_its_heartbeat_expires(
    ledger_path: Path,
) -> None:
    url = str(ledger_path)
    live = Ledger(url, heartbeat_seconds=float(HEARTBEAT))  # a live worker: its heartbeat thread does the closing
    proc = _spawn(ELSEWHERE, url, HEARTBEAT, "600", "rows")
    try:
        _wait_for(live, lambda: any(r.subtask_id == "b" for r in _held(live)), "the worker's second call")
        (hold,) = _held(live)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        _wait_for(live, lambda: not _held(live), "a live worker to close the dead worker's hold")
        (task,) = live.tasks()
        steps = live.steps(task.id)
        day = _tenant_day(live)
        task_account = live.account(f"task:{task.id}")
    finally:
        live.close()
    ok, stale = steps
    assert (ok.subtask_id, ok.status) == ("a", "ok")
    assert (stale.subtask_id, stale.status, stale.cost_picos) == ("b", "unsettled", hold.picos)
    assert stale.note is not None and hold.owner is not None and hold.owner in stale.note
    assert "heartbeat" in stale.note and "another-host" in stale.note
    billed = (ok.cost_picos or 0) + hold.picos  # the most the provider can have billed for both calls
    assert day.spent_picos == billed and day.reserved_picos == 0
    assert task.status == "interrupted" and task.cost_picos == billed
    assert task_account is not None and task_account.killed == 1


@pytest.mark.parametrize("holds", ["rows", "leases"])
def test_a_paused_worker_comes_back_to_find_its_hold_closed_and_its_task_interrupted(
    ledger_path: Path, holds: str
) -> None:
    url = str(ledger_path)
    live = Ledger(url, heartbeat_seconds=float(HEARTBEAT))
    proc = _spawn(ELSEWHERE, url, HEARTBEAT, "3", holds)  # its second call takes 3 s; it is paused during it
    try:
        _wait_for(live, lambda: any(r.subtask_id == "b" for r in _held(live)), "the worker's second call")
        (hold,) = _held(live)
        os.kill(proc.pid, signal.SIGSTOP)
        _wait_for(live, lambda: not _held(live), "a live worker to take the paused one for dead")
        os.kill(proc.pid, signal.SIGCONT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        (task,) = live.tasks()
        steps = live.steps(task.id)
        every = _all_steps(live)  # with leases, a closed slice's rest is a row of its own
        day = _tenant_day(live)
    finally:
        live.close()
    by_status = {st.status: st for st in steps}
    late = [st for st in steps if st.status == "ok" and st.subtask_id == "b"]
    assert by_status["unsettled"].cost_picos == hold.picos
    # The call finished after all: its row is written, at cost 0, because its worst case is counted already.
    assert len(late) == 1 and late[0].cost_picos == 0 and "after recovery" in (late[0].note or "")
    # The third call was refused: the task's account was killed when the task was closed.
    assert [st.subtask_id for st in steps if st.status == "refused"] in ([], ["c"])
    assert not any(st.subtask_id == "c" and st.status == "ok" for st in steps)
    assert task.status == "interrupted"
    assert day.spent_picos == sum(st.cost_picos or 0 for st in every) and day.reserved_picos == 0


def test_a_live_workers_holds_and_tasks_are_left_alone(ledger_path: Path) -> None:
    url = str(ledger_path)
    first, second = Ledger(url, heartbeat_seconds=60), Ledger(url, heartbeat_seconds=60)
    try:
        first.accounts.ensure({"task:x": None})
        first.open_task_later({"id": "x", "agent": "a", "agent_version": "1", "tenant": "t", "created_at": 0.0},
                              {}).result()
        from paymaster.ledger import Charge, Reservation

        held = first.reserve(["task:x"], Charge(picos=5), task_id="x", kind="execute")
        assert isinstance(held, Reservation)
        assert second.recover() == []
        account = second.account("task:x")
        with second.session() as s:
            (task,) = s.exec(select(TaskRecord)).all()
    finally:
        first.close()
        second.close()
    assert account is not None and account.reserved_picos == 5
    assert task.status == "running" and task.owner == first.worker_id


def _leases(db: Ledger) -> list[tuple[str, str, int]]:
    return db.sql.call(lambda tx: [(str(r[0]), str(r[1]), int(r[2])) for r in tx.execute(
        "SELECT id, account, size_picos FROM leases WHERE size_picos IS NOT NULL").fetchall()])


def test_a_leasing_worker_killed_mid_call_has_its_leases_closed_at_their_worst_case(ledger_path: Path) -> None:
    url = str(ledger_path)
    live = Ledger(url, heartbeat_seconds=float(HEARTBEAT))
    proc = _spawn(ELSEWHERE, url, HEARTBEAT, "600", "leases")
    try:
        _wait_for(live, lambda: any(r.subtask_id == "b" for r in _held(live)), "the worker's second call")
        (hold,) = _held(live)
        (lease,) = _leases(live)  # the tenant's day account is capped: its slice is held on the account
        assert lease[1].startswith("tenant:acme:day:") and hold.leases is not None
        held_day = _tenant_day(live)
        assert held_day.reserved_picos == lease[2]  # the shared row holds the slice, not each call
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        _wait_for(live, lambda: not _held(live) and not _leases(live), "a live worker to close the dead worker's lease")
        (task,) = live.tasks()
        steps = live.steps(task.id)
        lease_rows = [st for st in _all_steps(live) if st.kind == "lease"]
        day = _tenant_day(live)
    finally:
        live.close()
    ok, stale = steps
    assert (ok.subtask_id, ok.status) == ("a", "ok")
    assert (stale.subtask_id, stale.status, stale.cost_picos) == ("b", "unsettled", hold.picos)
    billed = (ok.cost_picos or 0) + hold.picos  # the most the provider can have billed for both calls
    # The whole slice counts as spent; a row of its own carries what no call's row covers.
    (rest,) = lease_rows
    assert rest.status == "unsettled" and "another-host" in (rest.note or "")
    assert day.reserved_picos == 0 and day.spent_picos == lease[2] >= billed
    assert day.spent_picos == (ok.cost_picos or 0) + hold.picos + (rest.cost_picos or 0)
    assert task.status == "interrupted"
