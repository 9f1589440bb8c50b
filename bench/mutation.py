"""Mutation testing of the budget path: would the tests notice a broken cap?

Runs mutmut (configured in pyproject.toml, ``[tool.mutmut]``) over the modules that
decide a charge, a hold or a refusal, one worker process at a time, then prints the
mutation score per module and every surviving mutant with its file:line and diff.

mutmut only mutates function bodies: it leaves properties, context managers and
module-level code alone, and the reservation's SQL condition is module-level. The
``HAND_MUTANTS`` below cover those lines and the regressions issue 10 listed; each is
applied to a copy of the repository and the same tests run against it. A hand mutant
whose text is no longer in the source is reported as stale, so it gets rewritten
rather than silently skipped.

    python bench/mutation.py                    # everything not yet checked, then the report
    python bench/mutation.py --fresh            # forget earlier results and start over
    python bench/mutation.py --module _accounts # only modules whose path contains "_accounts"
    python bench/mutation.py --survivors        # re-check the last run's survivors (after adding tests)
    python bench/mutation.py --report           # print the report of the results so far
    python bench/mutation.py --hand-only        # only the hand mutants
    python bench/mutation.py --without tests/x.py  # leave out a test file (to see what it adds)
    python bench/mutation.py --recheck 'paymaster.pricing._tokens.x__request_texts__mutmut_*'  # check again
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LOG = ROOT / "mutants" / "mutation-run.log"
SEP = "ǁ"  # mutmut's separator between class and method in a mutant's name
# mutmut's own timeout counts CPU seconds; a mutant that makes calls wait (budget_wait, retry sleeps)
# burns none, so a test still running after this many seconds of wall time fails (pytest-timeout).
TEST_TIMEOUT = 60
WITHOUT: list[str] = []  # test files left out (--without), to measure what they add

# Which functions of a module count. "*" is every function; a module under paymaster/ledger/ or
# paymaster/executors/ that pyproject's do_not_mutate does not exclude is added with "*" (a new
# budget-path module is covered without editing this table).
SCOPE: dict[str, list[str]] = {  # in the order they are checked: the smaller core modules first
    "paymaster/executors/_waiting.py": ["*"],
    "paymaster/pricing/_tokens.py": ["bound_prompt_tokens", "_request_texts", "_overhead"],
    "paymaster/pricing/_prices.py": ["ModelPrices.worst_case", "ModelPrices.cost", "ModelPrices.rates_for"],
    "paymaster/executors/_retry.py": ["*"],
    "paymaster/ledger/_charges.py": ["*"],
    "paymaster/ledger/_holds.py": ["*"],
    "paymaster/ledger/_accounts.py": ["*"],
    "paymaster/executors/_guard.py": ["*"],
    "paymaster/executors/_settlements.py": ["*"],
    "paymaster/ledger/_writer.py": ["*"],
    "paymaster/ledger/_group.py": ["*"],
    "paymaster/ledger/_pending.py": ["*"],
    "paymaster/executors/_policy.py": ["*"],
    "paymaster/runtime/_admission.py": ["*"],
    "paymaster/ledger/_ledger.py": ["*"],
    "paymaster/ledger/_queued.py": ["*"],
    "paymaster/ledger/_database.py": ["*"],
    "paymaster/ledger/_sql.py": ["*"],
}
# Functions of those modules that decide nothing about money: reads for reports, text for people.
# Their mutants would only cost time (a surviving mutant runs every test that reaches it).
SKIP = [
    "ApprovalRequest.__str__", "ApprovalRequest.__repr__", "ApprovalRequest._amount", "describe_refusal",
    "Ledger.task", "Ledger.tasks", "Ledger.steps", "check_schema", "Ledger.finish_task", "resolve_url",
    "new_task_id", "Accounts._alerts", "_alerts", "Accounts.fire", "plan_record", "Estimate.as_record",
    "BudgetStop.__init__", "ModelRejected.__init__", "sqlite_pragmas", "_sqlite_connect",
]


@dataclass(frozen=True)
class HandMutant:
    """A change mutmut cannot make, written as a text substitution in one file."""

    path: str
    old: str  # a regular expression that must match exactly once
    new: str
    breaks: str


HAND_MUTANTS = [
    HandMutant("paymaster/ledger/_holds.py", r"spent_\{d\} \+ reserved_\{d\} \+ :\{d\} <= cap_\{d\}",
               "spent_{d} + :{d} <= cap_{d}", "a reservation ignores the holds of calls in flight"),
    HandMutant("paymaster/ledger/_holds.py", r"reserved_\{d\} \+ :\{d\} <= cap_\{d\}",
               "reserved_{d} + :{d} < cap_{d}", "a call that exactly fills the cap is refused"),
    HandMutant("paymaster/ledger/_holds.py", r"reserved_\{d\} = reserved_\{d\} - :held_\{d\}",
               "reserved_{d} = reserved_{d} - :{d}", "settling releases the actual cost, not the hold"),
    HandMutant("paymaster/ledger/_holds.py", r"spent_\{d\} = spent_\{d\} \+ :\{d\}\"",
               'spent_{d} = spent_{d} + :held_{d}"', "settling charges the hold, not the actual cost"),
    HandMutant("paymaster/ledger/_charges.py", r"self\.spent \+ self\.needed <= self\.cap",
               "self.spent + self.needed < self.cap", "the transient-refusal boundary (<= to <)"),
    HandMutant("paymaster/ledger/_charges.py", r"return max\(self\.cap - self\.used, 0\)",
               "return self.cap", "what is left on a refusing account is its whole cap"),
    HandMutant("paymaster/ledger/_liveness.py",
               r"pid != os\.getpid\(\) and not pid_alive\(pid\)", "pid != os.getpid()",
               "crash recovery closes the holds of a process that is still alive"),
    HandMutant("paymaster/ledger/_liveness.py", r"if workers\[owner\] < now:", "if workers[owner] < now + 3600:",
               "recovery closes the holds of a worker whose heartbeat is fresh"),
    HandMutant("paymaster/executors/_served.py", r"bound_in = bound_prompt_tokens\(request\)\n",
               "bound_in = bound_prompt_tokens(request) // 2\n", "the worst-case input bound is halved"),
    HandMutant("paymaster/executors/_served.py", r"return worst, bound_in \+ bound_out",
               "return worst, bound_in", "max_tokens is left out of the token hold"),
    HandMutant("paymaster/executors/_waiting.py", r" or not reservation\.transient", "",
               "every refusal waits budget_wait, not only transient ones"),
    HandMutant("paymaster/executors/_retry.py", r"if isinstance\(exc, RateLimitError\) and exc\.retry_after",
               "if False and exc.retry_after", "retry-after is ignored (retry at once)"),
    HandMutant("paymaster/errors.py", r"(class MalformedResponseError\(ProviderError\):\n.*\n\n    billable = )True",
               r"\g<1>False", "an unreadable 200 body is not charged"),
    HandMutant("paymaster/pricing/_tokens.py", r"MESSAGE_OVERHEAD_TOKENS = 8\n", "MESSAGE_OVERHEAD_TOKENS = 0\n",
               "the byte bound leaves out the per-message overhead"),
    HandMutant("paymaster/ledger/_group.py", r"cur\.execute\(\"BEGIN IMMEDIATE\"\)", 'cur.execute("BEGIN")',
               "a reservation's transaction does not take the write lock up front"),
]


def _config() -> dict[str, Any]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    config: dict[str, Any] = data["tool"]["mutmut"]
    return config


def scope() -> dict[str, list[str]]:
    """Modules to mutate and which of their functions count: SCOPE plus new ledger/executor modules."""
    excluded = [str(p) for p in _config().get("do_not_mutate", [])]
    found = dict(SCOPE)
    for folder in ("paymaster/ledger", "paymaster/executors"):
        for path in sorted((ROOT / folder).glob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel not in found and not any(fnmatch.fnmatch(rel, p) for p in excluded):
                found[rel] = ["*"]
    return {p: f for p, f in found.items() if (ROOT / p).exists()}


def _module(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def _function(mutant: str) -> str:
    """``Class.method`` or ``function`` from a mutant name such as ``pkg.mod.xǁCǁm__mutmut_3``."""
    mangled = mutant.rpartition(".")[2].rpartition("__mutmut_")[0]
    if mangled.startswith("x" + SEP):
        cls, _, method = mangled[2:].partition(SEP)
        return f"{cls}.{method}"
    return mangled.removeprefix("x_")


def counts(path: str, mutant: str, functions: list[str]) -> bool:
    """Whether ``mutant`` of file ``path`` is in scope."""
    name = _function(mutant)
    if name in SKIP:
        return False
    return "*" in functions or name in functions


def load_results(paths: dict[str, list[str]]) -> dict[str, dict[str, int | None]]:
    """Per module: every in-scope mutant and its mutmut exit code (None: not checked yet)."""
    out: dict[str, dict[str, int | None]] = {}
    for path, functions in paths.items():
        meta = ROOT / "mutants" / (path + ".meta")
        codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
        out[path] = {m: c for m, c in codes.items() if counts(path, m, functions)}
    return out


def late_kills(paths: dict[str, list[str]]) -> list[str]:
    """Kills that came only after most of the mutant's tests had passed: worth re-checking alone.

    On a loaded machine a test that depends on timing (how many calls overlap) can fail by itself;
    a mutant it "kills" late may in truth survive (``python bench/mutation.py --recheck NAME``).
    """
    late: list[str] = []
    for path in paths:
        meta_path = ROOT / "mutants" / (path + ".meta")
        if not meta_path.exists():
            continue
        meta = json.loads(meta_path.read_text())
        for m, code in meta["exit_code_by_key"].items():
            took, expected = meta["durations_by_key"].get(m, 0), meta["estimated_durations_by_key"].get(m, 0)
            if code in (1, 3) and expected > 5 and took > 0.7 * expected and counts(path, m, paths[path]):
                late.append(m)
    return late


def _status(code: int | None) -> str:
    return {None: "unchecked", 0: "survived", 1: "killed", 3: "killed", 33: "no tests", 37: "killed"}.get(
        code, "timeout" if code in (-24, 24, 152, 255, 36) else f"exit {code}")


def run_mutmut(args: list[str]) -> int:
    """Run mutmut with one worker, its noisy progress going to mutants/mutation-run.log."""
    LOG.parent.mkdir(exist_ok=True)
    with LOG.open("a") as log:
        log.write(f"\n=== mutmut {' '.join(args[:3])}{' ...' if len(args) > 3 else ''} ({len(args)} args)\n")
        log.flush()
        # mutmut puts mutants/ first on sys.path; an inherited PYTHONPATH could shadow it
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["PYTEST_TIMEOUT"] = str(TEST_TIMEOUT)
        # --deselect, not --ignore: a file named on the command line is collected despite --ignore
        env["PYTEST_ADDOPTS"] = " ".join(f"--deselect={t}" for t in WITHOUT)
        return subprocess.call([sys.executable, __file__, "--as-mutmut", *args], cwd=ROOT, stdout=log,
                               stderr=subprocess.STDOUT, env=env)


def as_mutmut(args: list[str]) -> None:
    """mutmut's own command line, with string mutants limited to "XX" wrapping.

    mutmut also swaps a string literal's case; on SQL keywords and identifiers (case-insensitive in
    SQLite) that gives mutants no test can kill, each costing a full run of the budget tests.
    """
    from mutmut.__main__ import cli
    from mutmut.mutation import mutators

    original = mutators.operator_string

    def wrap_only(node):  # type: ignore[no-untyped-def]
        yield from list(original(node))[:1]

    operators: list[Any] = mutators.mutation_operators  # type: ignore[assignment]
    operators[:] = [(t, wrap_only if f is original else f) for t, f in operators]
    cli(args)


def generate() -> None:
    """Let mutmut write mutants/ and its list of mutants without testing any (a run of nothing)."""
    run_mutmut(["run", "--max-children", "1", "no.such.module.*"])


def check(path: str, names: list[str]) -> None:
    """Run mutmut on these mutants of one module; results accumulate in mutants/*.meta."""
    if not names:
        return
    print(f"{path}: checking {len(names)} mutants (one worker; progress in {LOG.relative_to(ROOT)})", flush=True)
    for i in range(0, len(names), 500):  # keep argv short
        run_mutmut(["run", "--max-children", "1", *names[i:i + 500]])


def refresh_tests() -> None:
    """mutmut copies tests/ once; copy it again so new tests take part."""
    target = ROOT / "mutants" / "tests"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(ROOT / "tests", target, ignore=shutil.ignore_patterns("__pycache__"))


def _line_of(path: str, function: str, removed: list[str]) -> int | None:
    """The line in ``path`` of the first removed line of a diff, searched from the function's def."""
    lines = (ROOT / path).read_text().splitlines()
    cls, _, name = function.rpartition(".")
    start = 0
    if cls:
        start = next((i for i, t in enumerate(lines) if re.match(rf"\s*class {cls}\b", t)), 0)
    start = next((i for i in range(start, len(lines)) if re.match(rf"\s*(async )?def {name}\(", lines[i])), start)
    wanted = [r.strip() for r in removed if r.strip()]
    for i in range(start, len(lines)):
        if wanted and lines[i].strip() == wanted[0]:
            return i + 1
    return start + 1


def describe(path: str, mutant: str) -> str:
    """``file:line`` and the diff of a mutant."""
    os.chdir(ROOT)
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    diff = get_diff_for_mutant(mutant, path=path).splitlines()[2:]  # drop the ---/+++ header
    removed = [d[1:] for d in diff if d.startswith("-")]
    line = _line_of(path, _function(mutant), removed)
    body = "\n".join("      " + d for d in diff if d[:1] in "+-")
    return f"  {path}:{line}  {mutant.rpartition('.')[2]}\n{body}"


def report(paths: dict[str, list[str]]) -> None:
    results = load_results(paths)
    print("\nmutation score per module (killed / checked; a timeout counts as killed)")
    total = Counter[str]()
    survivors: list[tuple[str, str]] = []
    for path, codes in results.items():
        c = Counter(_status(code) for code in codes.values())
        c["killed"] += c.pop("timeout", 0)
        checked = c["killed"] + c["survived"]
        total.update(c)
        score = f"{100 * c['killed'] / checked:5.1f}%" if checked else "    -"
        extra = ", ".join(f"{n} {k}" for k, n in sorted(c.items()) if k not in ("killed", "survived"))
        print(f"  {path:36} {score}  {c['killed']:4}/{checked:<4} {extra}")
        survivors += [(path, m) for m, code in codes.items() if code == 0]
    checked = total["killed"] + total["survived"]
    if checked:
        print(f"  {'all':36} {100 * total['killed'] / checked:5.1f}%  {total['killed']:4}/{checked:<4}")
    late = late_kills(paths)
    if late:
        print(f"\n{len(late)} kills came late (after most tests passed; re-check them alone with --recheck):")
        for name in late:
            print(f"  {name}")
    print(f"\n{len(survivors)} surviving mutants:")
    for path, mutant in sorted(survivors, key=lambda s: (s[0], _function(s[1]), int(s[1].rpartition("_")[2]))):
        print(describe(path, mutant))


def test_selection() -> list[str]:
    """The tests mutmut runs, plus the two-process test it leaves out for speed."""
    tests = [str(t) for t in _config()["pytest_add_cli_args_test_selection"]]
    return [*tests, "tests/test_processes.py"]


def run_hand_mutants() -> None:
    """Apply each hand mutant to a copy of the repository and run the budget tests against it."""
    print("\nhand mutants (lines mutmut cannot mutate, and issue 10's regressions):")
    for hm in HAND_MUTANTS:
        source = (ROOT / hm.path).read_text()
        found = len(re.findall(hm.old, source))
        if found != 1:
            print(f"  STALE    {hm.path}: /{hm.old}/ matches {found} times; rewrite it for the new code")
            continue
        with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
            copy = Path(tmp)
            for part in ("paymaster", "tests", "bench", "pyproject.toml"):  # some tests import from bench/
                src = ROOT / part
                if src.is_dir():
                    shutil.copytree(src, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(src, copy / part)
            (copy / hm.path).write_text(re.sub(hm.old, hm.new, source))
            line = source[: re.search(hm.old, source).start()].count("\n") + 1  # type: ignore[union-attr]
            proc = subprocess.run(
                [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                 "--timeout", str(2 * TEST_TIMEOUT), *(t for t in test_selection() if t not in WITHOUT)],
                cwd=copy, env={**os.environ, "PYTHONPATH": str(copy)}, capture_output=True, text=True,
            )
        failed = [t.split()[1] for t in proc.stdout.splitlines() if t.startswith("FAILED ")]
        verdict = "SURVIVED" if proc.returncode == 0 else "killed" if failed else "ERROR"
        print(f"  {verdict:8} {hm.path}:{line}  {hm.breaks}", flush=True)
        if failed:
            print(f"           by {failed[0]}")
        elif proc.returncode:
            print("           " + "\n           ".join(proc.stdout.splitlines()[-5:]))


def main() -> None:
    if sys.argv[1:2] == ["--as-mutmut"]:
        as_mutmut(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fresh", action="store_true", help="delete mutants/ and start over")
    parser.add_argument("--module", action="append", default=[], help="only modules whose path contains this")
    parser.add_argument("--survivors", action="store_true", help="re-check the survivors (after adding tests)")
    parser.add_argument("--report", action="store_true", help="only print the report of the results so far")
    parser.add_argument("--no-hand", action="store_true", help="skip the hand mutants")
    parser.add_argument("--hand-only", action="store_true", help="only run the hand mutants")
    parser.add_argument("--without", action="append", default=[], help="leave out this test file")
    parser.add_argument("--recheck", action="append", default=[], help="check this mutant again (a glob works)")
    opts = parser.parse_args()
    WITHOUT.extend(opts.without)
    os.chdir(ROOT)
    paths = {p: f for p, f in scope().items() if not opts.module or any(m in p for m in opts.module)}
    if opts.recheck:
        run_mutmut(["run", "--max-children", "1", *opts.recheck])
        report(paths)
        return
    if opts.hand_only:
        run_hand_mutants()
        return
    if opts.fresh and (ROOT / "mutants").exists():
        shutil.rmtree(ROOT / "mutants")
    if not opts.report:
        if not (ROOT / "mutants").exists():
            generate()
        if opts.survivors:
            refresh_tests()
        for path, codes in load_results(paths).items():  # module by module, so each finishes in turn
            check(path, [m for m, c in codes.items() if c is None or (opts.survivors and c == 0)])
        if not opts.no_hand:
            run_hand_mutants()
    report(paths)


if __name__ == "__main__":
    main()
