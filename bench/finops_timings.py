"""Wall time of the reading commands on synthetic ledgers, start-up included.

    python bench/finops_timings.py [--runs 7] [--sizes 100000 1000000]

Makes the ledgers with bench/make_ledger.py when missing (bench/out/ledger-100k.db,
bench/out/ledger-1m.db), then times each command as a user runs it: the
``paymaster`` console script installed beside this Python (else ``python -c``
running the same entry point), a fresh process each run, Python start-up and
imports included, reading this checkout's code (PYTHONPATH). Prints the best and
the median of ``--runs`` runs, beside the same process doing nothing
(``python -c pass``), the floor any command pays, and the CPU time (user +
system) of the best run: on a shared machine wall time includes waiting for a
core, CPU time does not.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_ledger import make

from paymaster.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).with_name("paymaster")  # the console script pip installed
CLI = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-c", "from paymaster.cli import main; main()"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's paymaster, whatever the venv has installed


def timed(args: list[str], runs: int) -> tuple[float, float, float]:
    """Best and median wall seconds, and best CPU seconds (user + system), of ``runs`` fresh processes."""
    times, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(args, cwd=ROOT, env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(times), statistics.median(times), min(cpu)


def ledger_for(steps: int) -> Path:
    """The synthetic ledger of ``steps`` steps, made once."""
    name = f"ledger-{steps // 1000}k.db" if steps < 1_000_000 else f"ledger-{steps // 1_000_000}m.db"
    path = ROOT / "bench" / "out" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        make(path, steps)
    else:
        Ledger(path).close()  # one made by an older Paymaster gets today's schema (the report's indexes)
    return path


def main() -> None:
    """Command line: time the commands and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    py = sys.executable
    rows = [("`python -c pass` (floor)", "-", *timed([py, "-c", "pass"], args.runs)),
            ("`paymaster --help`", "-", *timed([*CLI, "--help"], args.runs))]
    for steps in args.sizes:
        db = str(ledger_for(steps))
        rows.append(("`paymaster ledger`", f"{steps:,}", *timed([*CLI, "ledger", "-l", db], args.runs)))
        with sqlite3.connect(db) as conn:
            (newest,) = conn.execute("SELECT id FROM tasks ORDER BY created_at DESC LIMIT 1").fetchone()
        rows.append(("`paymaster ledger show TASK`", f"{steps:,}",
                     *timed([*CLI, "ledger", "show", newest, "-l", db], args.runs)))
        rows.append(("`paymaster report`", f"{steps:,}", *timed([*CLI, "report", "-l", db], args.runs)))
        rows.append(("`paymaster report --format json`", f"{steps:,}",
                     *timed([*CLI, "report", "-l", db, "--format", "json"], args.runs)))
        html = str(ROOT / "bench" / "out" / "report.html")
        rows.append(("`paymaster report --html` (charts read every step)", f"{steps:,}",
                     *timed([*CLI, "report", "-l", db, "--html", html], args.runs)))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{' '.join(CLI)} on {os.cpu_count()} cores, load average {load} at the end; wall time includes waiting "
          "for the CPU.")
    print(f"| command | ledger steps | wall, best of {args.runs} | wall, median | CPU (user + sys), best |")
    print("|---|---:|---:|---:|---:|")
    for name, steps_text, best, mid, cpu in rows:
        print(f"| {name} | {steps_text} | {best:.2f} s | {mid:.2f} s | {cpu:.2f} s |")


if __name__ == "__main__":
    main()
