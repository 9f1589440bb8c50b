"""A fleet on one budget: N worker processes share one tenant account on PostgreSQL.

Each process runs tasks of one model call each, many at once on its event
loop, against a zero-latency scripted provider, all on the tenant's day
account. Reports reserved calls per second in total, the writes each call
makes to the shared account's row (without leases: one to reserve, one to
settle; with leases: a lease taken or returned, counted by each worker), and
the overshoot (spend past the cap), which must be 0, and where the machine's
CPU went: milliseconds per call in the worker processes and, when the server
runs on this host, in PostgreSQL's processes. Runs with and without leases, on
a cap that leaves room for every call and on one that runs out.

Two last rows bound it from below. A floor: the database work alone, the
statements one leased call's task sends (captured from a real run) replayed by
the same number of processes straight through psycopg, 16 calls per commit,
with no runtime, no event loop and no per-group lock: what no runtime sending
them could beat here. And a peer: the OpenAI Agents SDK's ``Runner.run`` on a
zero-latency fake model in the same number of processes, as many at once,
keeping no ledger and holding no budget at all.

    eval "$(.ci/postgres start /tmp/pg)"
    python bench/fleet.py --url "$PAYMASTER_TEST_POSTGRES" --workers 8 --tasks 400
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import re
import secrets
import time
from decimal import Decimal
from typing import Any

import anyio

from paymaster import Agent, Budget, Limit, Runtime, ScriptedProvider, Usage
from paymaster._money import from_picos, to_picos
from paymaster.ledger import Ledger

USAGE = Usage(input_tokens=200, output_tokens=50)
AT_ONCE = 50  # tasks in flight per process


class Call(Agent):
    name = "call"


def _worker(url: str, cap: str, tasks: int, start: float, leases: bool, writes: Any) -> None:
    async def main() -> None:
        limits = [Limit("tenant:fleet", day=Budget(usd=cap))]
        with Runtime(ledger=url, provider=ScriptedProvider(usage=USAGE, record=False), limits=limits, budget_wait=5,
                     leases=leases) as rt:
            limiter = anyio.Semaphore(AT_ONCE)

            async def one(i: int) -> None:
                async with limiter:
                    await rt.run(Call, f"job {i}", tenant="fleet")

            await anyio.sleep(max(start - time.time(), 0))  # every process starts together
            cpu = time.process_time()
            async with anyio.create_task_group() as tg:
                for i in range(tasks):
                    tg.start_soon(one, i)
        cpu = time.process_time() - cpu  # the writer thread's and the closing's included
        book = rt.ledger.accounts.leases  # closed: every lease is back
        count = sum(n for a, n in book.writes.items() if a.startswith("tenant:fleet:day:")) if book else 0
        writes.put((count, cpu))

    anyio.run(main)


def postgres_cpu_seconds(url: str) -> float | None:
    """CPU time used so far by the PostgreSQL server at ``url`` (Linux /proc); None when it is not on this host.

    Only that server's processes (its postmaster and the postmaster's children) count: another cluster on
    this host (a colleague's tests, say) is no part of this benchmark's cost.
    """
    postmaster = _postmaster(url)
    if postmaster is None:
        return None
    ticks, found = 0, False
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a backend that ended meanwhile
        if int(pid) != postmaster and int(fields[1]) != postmaster:
            continue
        # utime and stime, and for the postmaster cutime and cstime: the backends that have ended
        ticks += sum(int(f) for f in fields[11:15])
        found = True
    return ticks / os.sysconf("SC_CLK_TCK") if found else None


@functools.lru_cache
def _postmaster(url: str) -> int | None:
    """The process id of the server at ``url`` if it runs on this host (its data directory is readable here)."""
    import psycopg
    from sqlalchemy import make_url

    try:
        with psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)) as conn:
            directory = conn.execute("SHOW data_directory").fetchone()
        with open(os.path.join(str(directory[0] if directory else ""), "postmaster.pid")) as pid_file:
            return int(pid_file.readline())
    except (OSError, ValueError, psycopg.Error):
        return None  # another host, or a role that may not read the setting: no figure rather than a wrong one


def _launch(target: Any, args: tuple[Any, ...], workers: int, start: float) -> list[multiprocessing.Process]:
    """Start ``workers`` processes of ``target(*args)``; return at ``start``, the moment they all begin work."""
    procs = [multiprocessing.Process(target=target, args=args) for _ in range(workers)]
    for p in procs:
        p.start()
    while time.time() < start:
        time.sleep(0.01)
    return procs


def run(url: str, workers: int, tasks: int, cap: str, leases: bool) -> dict[str, Any]:
    """One run on a fresh tenant account: calls per second, and spend against the cap."""
    db = Ledger(url)
    db.sql.call(lambda tx: tx.execute("DELETE FROM accounts WHERE id LIKE 'tenant:fleet%'"))
    start = time.time() + 3.0
    writes: Any = multiprocessing.Queue()
    procs = _launch(_worker, (url, cap, tasks, start, leases, writes), workers, start)
    server = postgres_cpu_seconds(url)
    for p in procs:
        p.join()
    elapsed = time.time() - start
    server = None if server is None else (postgres_cpu_seconds(url) or 0.0) - server
    rows = db.sql.call(lambda tx: list(tx.execute(
        "SELECT spent_picos, reserved_picos, spent_calls FROM accounts WHERE id LIKE 'tenant:fleet:day:%'"
    ).fetchall()))
    db.close()
    spent, reserved, calls = (int(v) for v in rows[0])
    reports = [writes.get() for _ in procs]
    lease_writes = sum(n for n, _ in reports)
    return {
        "worker_ms_per_call": 1000 * sum(c for _, c in reports) / max(calls, 1),
        "server_ms_per_call": None if server is None else 1000 * server / max(calls, 1),
        "writes_per_call": lease_writes / max(calls, 1) if leases else 2.0,
        "calls": calls, "seconds": elapsed, "calls_per_second": calls / elapsed,
        "spent_usd": float(from_picos(spent)), "reserved": reserved,
        "overshoot_usd": float(from_picos(max(spent - to_picos(Decimal(cap)), 0))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="a PostgreSQL ledger URL")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=400, help="tasks per worker")
    args = parser.parse_args()
    print("| holds | cap | workers | calls | calls/s in total | shared-account writes per call | overshoot |"
          " CPU ms per call: workers | PostgreSQL |")
    print("|---|---|---|---|---|---|---|---|---|")
    for leases in (False, True):
        for label, cap in (("room for all", "1000"), ("runs out", "0.5")):
            r = run(args.url, args.workers, args.tasks, cap, leases)
            print(f"| {'leases' if leases else 'rows'} | {label} (${cap}) | {args.workers} | {r['calls']:.0f} |"
                  f" {r['calls_per_second']:.0f} | {r['writes_per_call']:.3f} | ${r['overshoot_usd']:.6f} |"
                  f" {r['worker_ms_per_call']:.2f} | {_ms(r['server_ms_per_call'])} |")
    f = floor(args.url, args.workers, args.tasks)
    print(f"| floor: the {f['statements']} statements of a leased call alone, replayed | room for all |"
          f" {args.workers} | {f['calls']} | {f['calls_per_second']:.0f} | - | - | {f['worker_ms_per_call']:.2f} |"
          f" {_ms(f['server_ms_per_call'])} |")
    p = peer(args.workers, args.tasks)
    if p is None:
        print("skipped the OpenAI Agents SDK row: not installed (pip install -e '.[bench]')")
    else:
        print(f"| peer: OpenAI Agents SDK, no ledger, no budget | - | {args.workers} | {p['calls']} |"
              f" {p['calls_per_second']:.0f} | - | - | {p['worker_ms_per_call']:.2f} | - |")


def capture(url: str) -> tuple[str, dict[str, str], list[tuple[str, dict[str, Any]]]]:
    """The statements (driver form) of one leased one-call task, its task id and leases' accounts, from a real run."""
    from paymaster.ledger import _group  # private: a benchmark's look at what goes over the wire

    sent: list[tuple[str, dict[str, Any]]] = []
    execute = _group.Tx.execute

    def recording(tx: Any, sql: str, params: Any = None) -> Any:
        if "FOR UPDATE" not in sql:  # the group's lock, not the call's: left out of the floor
            sent.append((_group._pyformat(sql), dict(params or {})))
        return execute(tx, sql, params)

    async def main() -> tuple[str, dict[str, str]]:
        limits = [Limit("tenant:floor", day=Budget(usd="1000000"))]
        with Runtime(ledger=url, provider=ScriptedProvider(usage=USAGE), limits=limits, leases=True) as rt:
            for i in range(3):  # the leases are taken, the statements prepared
                await rt.run(Call, f"warm {i}", tenant="floor")
            await rt.ledger.aflush()
            _group.Tx.execute = recording  # type: ignore[method-assign,assignment]
            try:
                outcome = await rt.run(Call, "captured", tenant="floor")
                await rt.ledger.aflush()
            finally:
                _group.Tx.execute = execute  # type: ignore[method-assign]
            # The call's own statements only: each names its task. Anything else that ran meanwhile (a lease
            # returned by the heartbeat's sweep, a new one taken) is not a per-call cost.
            sent[:] = [(sql, p) for sql, p in sent if any(isinstance(v, str) and outcome.task_id in v
                                                          for v in p.values())]
            # One lease per shared account of the chain (agent, tenant, tenant's day): ``l<n>`` in its
            # statements. Their rows are gone once the runtime closes: the replay makes rows of its own.
            book = rt.ledger.accounts.leases
            assert book is not None
            ids = {str(v) for _, params in sent for k, v in params.items() if re.fullmatch(r"l\d+", k)}
            leases = {i: lease.account for i in sorted(ids) if (lease := book.get(i)) is not None}
            assert len(leases) == len(ids), "the captured call's leases are no longer this worker's"
            return outcome.task_id, leases

    task_id, leases = anyio.run(main)
    return task_id, leases, sent


def _replay(url: str, sent: list[tuple[str, dict[str, Any]]], task_id: str, leases: dict[str, str], calls: int,
            start: float, out: Any) -> None:
    import psycopg
    from sqlalchemy import make_url

    # The driver's own URL: without SQLAlchemy's "+psycopg"
    conn = psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
    cur = conn.cursor()
    # Lease rows of this process's own, one for each the captured call held on, as a worker has: shared
    # by the processes, they would wait on each other's row locks; missing, the call's writes to them
    # would find no row and cost less than they do.
    own = {lease: secrets.token_hex(12) for lease in leases}
    for lease, mine in own.items():
        cur.execute("INSERT INTO leases (id, account, owner, created_at) VALUES (%s, %s, 'floor', 0)",
                    (mine, leases[lease]))
    conn.commit()
    work = []  # every call's statements with fresh ids, built before the clock starts
    for _ in range(calls):
        task, hold = secrets.token_hex(8), secrets.token_hex(16)
        work.append([(sql, {k: _fresh(k, v, task_id, task, hold, own) for k, v in params.items()})
                     for sql, params in sent])
    time.sleep(max(start - time.time(), 0))
    cpu, began = time.process_time(), time.perf_counter()
    for first in range(0, calls, 16):
        for statements in work[first:first + 16]:
            for sql, params in statements:
                cur.execute(sql, params)
        conn.commit()
    out.put((calls, time.process_time() - cpu, time.perf_counter() - began))
    cur.execute("DELETE FROM leases WHERE id = ANY(%s)", (list(own.values()),))
    conn.commit()


def _fresh(key: str, value: Any, task_id: str, task: str, hold: str, own: dict[str, str]) -> Any:
    if not isinstance(value, str):
        return value
    if value in own:
        return own[value]
    if key in ("id", "rid") and len(value) == 32 and task_id not in value:
        return hold  # the reservation's id
    return value.replace(task_id, task)


def floor(url: str, workers: int, tasks: int) -> dict[str, Any]:
    """The captured statements replayed by ``workers`` processes: calls per second, CPU per call."""
    task_id, leases, sent = capture(url)
    out: Any = multiprocessing.Queue()
    start = time.time() + 3.0 + tasks / 1000  # time to build the statements first
    procs = _launch(_replay, (url, sent, task_id, leases, tasks, start, out), workers, start)
    server = postgres_cpu_seconds(url)
    reports = [out.get() for _ in procs]
    server = None if server is None else (postgres_cpu_seconds(url) or 0.0) - server
    for p in procs:
        p.join()
    calls = sum(r[0] for r in reports)
    return {"statements": len(sent), "calls": calls, "calls_per_second": calls / max(r[2] for r in reports),
            "worker_ms_per_call": 1000 * sum(r[1] for r in reports) / calls,
            "server_ms_per_call": None if server is None else 1000 * server / calls}


def _peer_worker(tasks: int, start: float, out: Any) -> None:
    from overhead import openai_fake_agent  # bench/ is on the path: this script runs from there

    agent = openai_fake_agent(0.0, USAGE.input_tokens, USAGE.output_tokens)

    async def main() -> None:
        from agents import Runner

        limiter = anyio.Semaphore(AT_ONCE)

        async def one(i: int) -> None:
            async with limiter:
                await Runner.run(agent, f"job {i}")

        for i in range(10):  # its imports and first-call set-up, outside the clock
            await one(i)
        await anyio.sleep(max(start - time.time(), 0))
        cpu, began = time.process_time(), time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(tasks):
                tg.start_soon(one, i)
        out.put((tasks, time.process_time() - cpu, time.perf_counter() - began))

    anyio.run(main)


def peer(workers: int, tasks: int) -> dict[str, Any] | None:
    """The OpenAI Agents SDK in ``workers`` processes, no ledger: calls/s, CPU per call (None: not installed)."""
    try:
        import agents  # noqa: F401
    except ImportError:
        return None
    out: Any = multiprocessing.Queue()
    start = time.time() + 10.0  # the SDK's imports take seconds in each process
    procs = _launch(_peer_worker, (tasks, start, out), workers, start)
    reports = [out.get() for _ in procs]
    for p in procs:
        p.join()
    calls = sum(r[0] for r in reports)
    return {"calls": calls, "calls_per_second": calls / max(r[2] for r in reports),
            "worker_ms_per_call": 1000 * sum(r[1] for r in reports) / calls}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()
