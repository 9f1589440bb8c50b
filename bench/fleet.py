"""A fleet on one budget: N worker processes share one tenant account on PostgreSQL.

Each process runs tasks of one model call each, many at once on its event
loop, against a zero-latency scripted provider, all on the tenant's day
account. Reports reserved calls per second in total, the writes each call
makes to the shared account's row (without leases: one to reserve, one to
settle; with leases: a lease taken or returned, counted by each worker), and
the overshoot (spend past the cap), which must be 0. Runs with and without
leases, on a cap that leaves room for every call and on one that runs out.

    eval "$(.ci/postgres start /tmp/pg)"
    python bench/fleet.py --url "$PAYMASTER_TEST_POSTGRES" --workers 8 --tasks 400
"""

from __future__ import annotations

import argparse
import multiprocessing
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
        with Runtime(ledger=url, provider=ScriptedProvider(usage=USAGE), limits=limits, budget_wait=5,
                     leases=leases) as rt:
            limiter = anyio.Semaphore(AT_ONCE)

            async def one(i: int) -> None:
                async with limiter:
                    await rt.run(Call, f"job {i}", tenant="fleet")

            await anyio.sleep(max(start - time.time(), 0))  # every process starts together
            async with anyio.create_task_group() as tg:
                for i in range(tasks):
                    tg.start_soon(one, i)
        book = rt.ledger.accounts.leases  # closed: every lease is back
        writes.put(sum(n for a, n in book.writes.items() if a.startswith("tenant:fleet:day:")) if book else 0)

    anyio.run(main)


def run(url: str, workers: int, tasks: int, cap: str, leases: bool) -> dict[str, float]:
    """One run on a fresh tenant account: calls per second, and spend against the cap."""
    db = Ledger(url)
    db.sql.call(lambda tx: tx.execute("DELETE FROM accounts WHERE id LIKE 'tenant:fleet%'"))
    start = time.time() + 3.0
    writes: Any = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_worker, args=(url, cap, tasks, start, leases, writes))
             for _ in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    elapsed = time.time() - start
    rows = db.sql.call(lambda tx: list(tx.execute(
        "SELECT spent_picos, reserved_picos, spent_calls FROM accounts WHERE id LIKE 'tenant:fleet:day:%'"
    ).fetchall()))
    db.close()
    spent, reserved, calls = (int(v) for v in rows[0])
    lease_writes = sum(writes.get() for _ in procs)
    return {
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
    print("| holds | cap | workers | calls | calls/s in total | shared-account writes per call | overshoot |")
    print("|---|---|---|---|---|---|---|")
    for leases in (False, True):
        for label, cap in (("room for all", "1000"), ("runs out", "0.5")):
            r = run(args.url, args.workers, args.tasks, cap, leases)
            print(f"| {'leases' if leases else 'rows'} | {label} (${cap}) | {args.workers} | {r['calls']:.0f} |"
                  f" {r['calls_per_second']:.0f} | {r['writes_per_call']:.3f} | ${r['overshoot_usd']:.6f} |")


if __name__ == "__main__":
    main()
