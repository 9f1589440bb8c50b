"""A synthetic ledger of N steps for timing the read side (report, ledger, statements, HTML).

    python bench/make_ledger.py --steps 1000000 --out bench/out/ledger-1m.db

About 8 steps per task (plan, executes on three tiers, a tool, a retry now and
then, a summary, an aggregate), 90 days, 6 agents, 12 tenants, two tag keys,
a few planted expensive tasks and one expensive day. The schema is the real
one (made by ``Ledger``); rows go in with ``executemany`` inside one
transaction, with durability pragmas off for the load only. The report's
indexes are dropped for the load and rebuilt after it by ``Ledger``'s upgrade
path, as on a ledger made by an older Paymaster (it prints how long that took).
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import time
from pathlib import Path

from paymaster.ledger import Ledger
from paymaster.ledger._tables import REPORT_INDEXES

AGENTS = {"triage": 0.004, "refund": 0.02, "research": 0.3, "summariser": 0.01, "coder": 0.12, "analyst": 0.06}
TENANTS = [f"tenant-{i:02d}" for i in range(12)]
TEAMS = ["support", "science", "sales", "ops"]
TIERS = [("fast", "openai", "gpt-4o-mini-2024-07-18", 0.15, 0.6), ("balanced", "anthropic",
         "claude-sonnet-4-20250514", 3.0, 15.0), ("deep", "openai", "gpt-4o-2024-08-06", 2.5, 10.0)]
START = 1_785_542_400.0  # 2026-08-01 00:00 UTC
DAYS = 90
PICOS = 10**12

TASK_COLS = (
    "id, agent, agent_version, tenant, tags, budget, input_preview, status, stop_reason, output, success, "
    "cost_picos, baseline_picos, unpriced_calls, saved_picos, cache_hits, input_tokens, output_tokens, calls, "
    "plan, parent_id, depth, owner, created_at, finished_at"
)
STEP_COLS = (
    "task_id, subtask_id, kind, status, provider, model, tier, input_tokens, output_tokens, cache_read_tokens, "
    "cache_write_tokens, cost_picos, baseline_picos, reserved_picos, saved_picos, latency_ms, attempt, error, "
    "note, created_at"
)


def _picos(tokens_in: int, tokens_out: int, price_in: float, price_out: float) -> int:
    # Prices per million tokens, in whole pico-dollars per token as the real price book has them.
    return tokens_in * int(price_in * 1_000_000) + tokens_out * int(price_out * 1_000_000)


def make(path: Path, steps: int, seed: int = 7) -> tuple[int, int]:
    """Write a ledger of about ``steps`` steps to ``path``; returns (tasks, steps) written."""
    path.unlink(missing_ok=True)
    Ledger(path).close()  # the real schema and indexes
    rng = random.Random(seed)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    for index in REPORT_INDEXES:  # one sorted build after the load beats 140k ordered inserts per index
        conn.execute(f"DROP INDEX {index.name}")
    task_rows: list[tuple[object, ...]] = []
    step_rows: list[tuple[object, ...]] = []
    n_tasks = n_steps = 0
    spike_day = DAYS - 10
    deep = TIERS[-1]
    while n_steps < steps:
        agent = rng.choice(list(AGENTS))
        scale = AGENTS[agent]
        day = rng.randrange(DAYS)
        at = START + day * 86_400 + rng.random() * 86_400
        task_id = f"{n_tasks:016x}"
        kinds = ["plan"] + ["execute"] * rng.randint(2, 5) + ["tool"]
        if rng.random() < 0.1:
            kinds.append("retry")
        kinds += ["summarise", "aggregate"] if rng.random() < 0.5 else ["aggregate"]
        planted = rng.random() < 0.002 or (day == spike_day and rng.random() < 0.3)
        cost = baseline = tin = tout = calls = 0
        for i, kind in enumerate(kinds):
            if kind == "tool":
                step_rows.append((task_id, "s1", "tool", "ok", "tool", "lookup_order", None, 0, 0, 0, 0,
                                  1_000_000_000, None, 1_000_000_000, None, 3.0, 1, None, None, at + i))
                cost += 1_000_000_000
                continue
            tier, provider, model, p_in, p_out = rng.choice(TIERS)
            spend = scale * (20 if planted else 1) * rng.lognormvariate(0, 0.5)
            t_in = max(1, int(spend / (p_in + 4 * p_out) * 1_000_000 * 0.8))
            t_out = max(1, t_in // 4)
            c = _picos(t_in, t_out, p_in, p_out)
            b = _picos(t_in, t_out, deep[3], deep[4])
            step_rows.append((task_id, f"s{i}", kind, "ok", provider, model, tier, t_in, t_out, 0, 0, c, b,
                              c + c // 2, None, 200.0, 2 if kind == "retry" else 1, None, None, at + i))
            cost, baseline, tin, tout, calls = cost + c, baseline + b, tin + t_in, tout + t_out, calls + 1
        n_steps += len(kinds)
        success = rng.random() < 0.9
        tags = json.dumps({"team": rng.choice(TEAMS), "env": "prod" if rng.random() < 0.8 else "staging"})
        task_rows.append((task_id, agent, "1", rng.choice(TENANTS), tags, "{}", "", "succeeded" if success
                          else "failed", None, "ok", success, cost, baseline, 0, 0, 0, tin, tout, calls, None,
                          None, 0, "bench:1", at, at + len(kinds)))
        n_tasks += 1
        if len(step_rows) >= 50_000:
            _flush(conn, task_rows, step_rows)
    _flush(conn, task_rows, step_rows)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    start = time.perf_counter()
    Ledger(path).close()  # the upgrade path builds the report's indexes
    print(f"{path}: the report's indexes built by Ledger's upgrade in {time.perf_counter() - start:.1f} s")
    return n_tasks, n_steps


def _flush(conn: sqlite3.Connection, tasks: list[tuple[object, ...]], steps: list[tuple[object, ...]]) -> None:
    conn.executemany(f"INSERT INTO tasks ({TASK_COLS}) VALUES ({', '.join('?' * 25)})", tasks)
    conn.executemany(f"INSERT INTO steps ({STEP_COLS}) VALUES ({', '.join('?' * 20)})", steps)
    tasks.clear()
    steps.clear()


def main() -> None:
    """Command line: make one synthetic ledger."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path("bench/out/ledger-1m.db"))
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    tasks, steps = make(args.out, args.steps)
    print(f"{args.out}: {tasks:,} tasks, {steps:,} steps in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
