"""Golden sets: JSON Lines of inputs with what a right answer looks like (see evals/golden/README.md).

One item a line::

    {"id": "t01", "input": "I was charged twice", "expected": "billing",
     "scorer": "exact", "task_type": "billing", "tags": {"lang": "en"}}

Every mistake is reported with the file, the line number and what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ._scorers import ScorerSpec, parse_scorer


class GoldenSetError(ConfigurationError):
    """A golden-set file or line is malformed; the message names the file and line."""


@dataclass(frozen=True)
class GoldenItem:
    """One golden-set case: the input, how to score an answer, and optional task type and tags."""

    id: str
    input: str
    scorer: ScorerSpec
    expected: Any = None
    task_type: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    line: int = 0


_FIELDS = {"id", "input", "expected", "scorer", "task_type", "tags"}


def parse_item(raw: object, *, line: int, base_dir: Path, where: str) -> GoldenItem:
    """Validate one decoded line; ``base_dir`` resolves a Python scorer given as a file path."""

    def fail(message: str) -> GoldenSetError:
        return GoldenSetError(f"{where}: {message}")

    if not isinstance(raw, dict):
        raise fail(f"each line must be a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise fail(f"unknown field(s) {unknown}; allowed: {sorted(_FIELDS)}")
    text = raw.get("input")
    if not isinstance(text, str) or not text.strip():
        raise fail("'input' is required and must be a non-empty string")
    item_id = raw.get("id", f"line-{line}")
    if not isinstance(item_id, str | int) or isinstance(item_id, bool) or not str(item_id):
        raise fail(f"'id' must be a string or an integer, got {item_id!r}")
    task_type = raw.get("task_type")
    if task_type is not None and (not isinstance(task_type, str) or not task_type):
        raise fail(f"'task_type' must be a non-empty string, got {task_type!r}")
    tags = raw.get("tags", {})
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise fail(f"'tags' must map strings to strings, e.g. {{\"lang\": \"en\"}}; got {tags!r}")
    try:
        scorer = parse_scorer(raw.get("scorer"), raw.get("expected"), "expected" in raw, base_dir)
    except ValueError as exc:
        raise fail(str(exc)) from None
    return GoldenItem(
        id=str(item_id), input=text, scorer=scorer, expected=raw.get("expected"),
        task_type=task_type, tags=dict(tags), line=line,
    )


def load_golden(path: str | Path) -> list[GoldenItem]:
    """Read a golden set; blank lines and lines starting with ``#`` are skipped, ids must be unique."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise GoldenSetError(f"golden set {p} does not exist") from None
    except UnicodeDecodeError as exc:
        raise GoldenSetError(f"golden set {p} is not UTF-8 text: {exc}") from None
    items: list[GoldenItem] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{p}:{number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise GoldenSetError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        item = parse_item(raw, line=number, base_dir=p.parent, where=where)
        if item.id in seen:
            raise GoldenSetError(f"{where}: id {item.id!r} is already used on line {seen[item.id]}")
        seen[item.id] = number
        items.append(item)
    if not items:
        raise GoldenSetError(f"golden set {p} has no items")
    return items
