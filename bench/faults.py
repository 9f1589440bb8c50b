"""Budgets under provider faults: many tasks, a flaky loopback provider, a cap of half the work.

An OpenAI-compatible loopback server (tests/billing_server.py) answers with
100-200 ms latency and fails 20% of requests (429 with retry-after, 500, 529,
a malformed 200); it bills every request it answers. 500 tasks run at once
through the real ``OpenAIProvider`` under a tenant day cap of half what the
work costs. Reported: overshoot of the cap (ledger and bill), the share of the
cap spent on calls the server billed (not on worst-case charges of calls that
never reached it), and how every task ended.

    python bench/faults.py --tasks 500
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from billing_server import BillingServer, Call, Fault, Price

from paymaster import Agent, Budget, Limit, OpenAIProvider, RetryPolicy, Runtime, Tier
from paymaster._money import from_picos, to_picos

PRICES = {"gpt-4o-mini": Price("0.15", "0.60")}
TIERS = [Tier(name="fast", provider="openai", model="gpt-4o-mini", max_tokens=256)]


class Triage(Agent):
    name = "triage"
    complexity = "simple"  # type: ignore[assignment]
    max_tokens = "auto"


def faulty(rate: float, seed: int) -> Any:
    """A ``decide`` function failing ``rate`` of requests with the faults real providers show."""
    rng = random.Random(seed)

    def decide(call: Call) -> Fault | None:
        if rng.random() >= rate:
            return None
        return rng.choice([
            Fault(status=429, retry_after=round(rng.uniform(0.1, 0.5), 2)),
            Fault(status=500),
            Fault(status=529),
            Fault(malformed=True),
        ])

    return decide


async def run_tasks(url: str, ledger: Path, tasks: int, cap: Decimal | None, tenant: str = "acme") -> dict[str, Any]:
    """Run ``tasks`` triage tasks at once against ``url`` under an optional tenant day cap."""
    limits = [Limit("tenant:acme", day=Budget(usd=str(cap)))] if cap is not None else []
    provider = OpenAIProvider(api_key="sk-bench", base_url=url)
    statuses: Counter[str] = Counter()
    with Runtime(ledger=ledger, providers={"openai": provider}, tiers=TIERS, limits=limits,
                 retry=RetryPolicy(initial_wait=0.05, max_wait=0.5)) as rt:
        async def one(i: int) -> None:
            outcome = await rt.run(Triage, f"Ticket {i}: the invoice total looks wrong, please check.",
                                   tenant=tenant)
            statuses[outcome.status.value] += 1

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(tasks):
                tg.start_soon(one, i)
        wall = time.perf_counter() - started
        await provider.aclose()
        recorded = rt.ledger.tasks(limit=tasks + 10, tenant=tenant)
        ledger_picos = sum(t.cost_picos for t in recorded)
        open_tasks = sum(t.status in ("running", "awaiting_approval") for t in recorded)
    return {"wall": wall, "statuses": statuses, "ledger_picos": ledger_picos, "open": open_tasks,
            "recorded": len(recorded)}


def scenario(tasks: int, seed: int = 1) -> dict[str, Any]:
    """The work's cost measured fault-free, then the faulty run under a cap of half of it.

    Both runs share a ledger, as a deployment's runs do: the agent's reply lengths seen in the first
    size its ``max_tokens`` (and so its holds) in the second.
    """
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Path(tmp) / "ledger.db"
        with BillingServer(PRICES, latency=(0.1, 0.2), seed=seed) as server:
            sample = min(tasks, 40)
            anyio.run(run_tasks, server.openai_url, ledger, sample, None, "history")
            work = from_picos(server.billed_picos) * tasks / sample
        cap = (work / 2).quantize(Decimal("0.000001"))
        with BillingServer(PRICES, latency=(0.1, 0.2), seed=seed, decide=faulty(0.2, seed)) as server:
            result = anyio.run(run_tasks, server.openai_url, ledger, tasks, cap)
            billed = server.billed_picos
    result.update({"cap_picos": to_picos(cap), "billed_picos": billed, "work": work})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    r = scenario(args.tasks)
    cap = r["cap_picos"]
    rows = [
        "| tasks | cap | ledger spend | billed by the server | overshoot | cap spent on billed calls | statuses"
        " | wall s |",
        "|---|---|---|---|---|---|---|---|",
        f"| {args.tasks} | ${from_picos(cap)} | ${from_picos(r['ledger_picos'])} | ${from_picos(r['billed_picos'])} | "
        f"${from_picos(max(0, max(r['ledger_picos'], r['billed_picos']) - cap))} | "
        f"{r['billed_picos'] / cap:.0%} | {dict(r['statuses'])} | {r['wall']:.1f} |",
    ]
    table = "\n".join(rows)
    print(table)
    if args.markdown is not None:
        with args.markdown.open("a") as out:
            out.write(f"\n### Faults: 20% faulty provider, 100-200 ms latency, cap = half the work\n\n{table}\n")


if __name__ == "__main__":
    main()
