"""Per-call budget overhead: reserve + settle + step row, on a SQLite ledger file.

    python bench/reserve_settle.py [--calls 10000]

Prints the median and p99 per call for a one-account chain and for a full
chain (task, agent, agent-day, tenant, tenant-day, tenant-month, tag, tag-day),
beside a baseline measured in the same process: one raw sqlite3 INSERT + COMMIT
per call on a WAL file (the cheapest durable write SQLite can do).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from paymaster.ledger import Caps, Charge, Ledger, Reservation

CHAIN = [
    "task:bench", "agent:bench", "agent:bench:day:2026-11-23", "tenant:acme", "tenant:acme:day:2026-11-23",
    "tenant:acme:month:2026-11", "tag:team=support", "tag:team=support:day:2026-11-23",
]


def baseline(path: Path, calls: int) -> list[float]:
    """Raw sqlite3: one INSERT + COMMIT per call, WAL, synchronous=NORMAL."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, task TEXT, cost INTEGER, created REAL)")
    times = []
    for i in range(calls):
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (task, cost, created) VALUES (?, ?, ?)", ("bench", i, time.time()))
        conn.execute("COMMIT")
        times.append(time.perf_counter() - start)
    conn.close()
    return times


def paymaster_calls(path: Path, calls: int, chain: list[str]) -> list[float]:
    """Reserve on every account of ``chain``, then settle with a step row, as the guard does per call."""
    ledger = Ledger(path)
    ledger.accounts.ensure({a: Caps(picos=10**18, calls=10**9) if i == 0 else None for i, a in enumerate(chain)})
    held = Charge(picos=12_345_000_000, tokens=3_000, calls=1)
    spent = Charge(picos=2_345_000_000, tokens=1_200, calls=1)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        reservation = ledger.reserve(chain, held, task_id="bench", kind="execute", subtask_id="main",
                                     provider="openai", model="gpt-4o-mini", tier="fast")
        assert isinstance(reservation, Reservation)
        ledger.settle(reservation, spent, {
            "task_id": "bench", "subtask_id": "main", "kind": "execute", "status": "ok", "provider": "openai",
            "model": "gpt-4o-mini", "tier": "fast", "input_tokens": 1000, "output_tokens": 200,
            "cost_picos": spent.picos, "baseline_picos": 9 * spent.picos, "reserved_picos": held.picos,
            "latency_ms": 1.0, "attempt": 1, "created_at": time.time(),
        })
        times.append(time.perf_counter() - start)
    ledger.close()
    return times


def _ms(xs: list[float], q: float) -> float:
    return sorted(xs)[min(int(q * len(xs)), len(xs) - 1)] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = baseline(Path(tmp) / "raw.db", args.calls)
        one = paymaster_calls(Path(tmp) / "one.db", args.calls, CHAIN[:1])
        full = paymaster_calls(Path(tmp) / "full.db", args.calls, CHAIN)
    base_med = statistics.median(base)
    print(f"{args.calls} calls each, {os.cpu_count()} CPUs, SQLite {sqlite3.sqlite_version}")
    print(f"{'case':<46} {'median ms':>10} {'p99 ms':>8} {'x baseline':>11}")
    for name, xs in [
        ("baseline: raw sqlite3 INSERT+COMMIT", base),
        ("paymaster reserve+settle+row, 1 account", one),
        (f"paymaster reserve+settle+row, {len(CHAIN)} accounts", full),
    ]:
        print(f"{name:<46} {_ms(xs, 0.5):>10.3f} {_ms(xs, 0.99):>8.3f} {statistics.median(xs) / base_med:>11.1f}")


if __name__ == "__main__":
    main()
