"""Each package that routing touches imports on its own, in a fresh interpreter (no import cycle)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module", ["paymaster.router", "paymaster.evals", "paymaster.providers",
                                    "paymaster.planners", "paymaster.executors"])
def test_the_package_imports_first(module: str) -> None:
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True,
                          check=False, env={"PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-600:]
