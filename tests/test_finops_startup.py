"""The reading commands start without the heavy modules (the timings themselves are in bench/finops_timings.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from paymaster import Ledger
from tests.finops_helpers import add_task

# Pydantic: Typer converts options through it unless cli/_parsing.py passes plain values through.
HEAVY = ("pydantic", "sqlmodel", "sqlalchemy", "anthropic", "openai", "numpy", "tiktoken", "paymaster.runtime",
         "paymaster.evals")
ROOT = Path(__file__).resolve().parents[1]

# Runs a command in a fresh interpreter, then prints which heavy modules it imported.
PROBE = """
import json, sys
from paymaster.cli import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def loaded_by(*args: str) -> list[str]:
    code = PROBE.format(heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


@pytest.fixture
def small(ledger: Ledger, ledger_path: Path) -> Path:
    add_task(ledger, "t1", "triage", "0.10", tags={"team": "support"})
    return ledger_path


@pytest.mark.parametrize("args", [
    ["--help"], ["ledger"], ["ledger", "--format", "json"], ["report"], ["report", "--format", "csv"],
    ["statement", "--month", "2026-11"], ["ledger", "show", "t1"], ["ledger", "show", "t"],
])
def test_reading_commands_leave_the_sdks_sqlmodel_and_the_runtime_unloaded(small: Path, args: list[str]) -> None:
    ledger_args = [] if args == ["--help"] else ["--ledger", str(small)]
    assert loaded_by(*args, *ledger_args) == []


def test_commands_that_run_tasks_still_load_what_they_need(small: Path) -> None:
    assert {"sqlmodel", "paymaster.runtime"} <= set(loaded_by("demo", "--ledger", str(small)))
