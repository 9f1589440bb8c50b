"""The README's code blocks, as a newcomer would paste them: found by section, run from a fresh folder."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def block(section: str, lang: str = "python") -> str:
    """The first ``lang`` code block under the README heading ``## section``."""
    text = README.read_text(encoding="utf-8").split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(rf"```{lang}\n(.*?)```", text, re.S)
    assert found is not None, f"no {lang} block under {section}"
    return found.group(1)


def run_block(section: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the section's Python block as a script in ``folder`` (its working directory)."""
    script = folder / "snippet.py"
    script.write_text(block(section), encoding="utf-8")
    monkeypatch.chdir(folder)
    runpy.run_path(str(script), run_name="__main__")
