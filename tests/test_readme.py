"""The README's quick start runs as written (offline) and records what it says it records."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

from paymaster import Ledger

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quick_start_runs_as_pasted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    quick_start = README.read_text().split("## Quick start", 1)[1]
    code = re.search(r"```python\n(.*?)```", quick_start, re.S)
    assert code is not None
    script = tmp_path / "quick_start.py"
    script.write_text(code.group(1))
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__main__")
    printed = capsys.readouterr().out
    assert printed.startswith("succeeded")
    (task,) = Ledger(tmp_path / "paymaster.db").tasks()
    assert task.id in printed and (task.tenant, task.tags) == ("acme", {"team": "support"})
