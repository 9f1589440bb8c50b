"""Machine-readable output for the reading commands: JSON and CSV on stdout or to a file."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

Format = Literal["text", "json", "csv"]
FORMATS = ("text", "json", "csv")


def _default(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)  # exact: money never goes through a float
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def to_json(data: Any) -> str:
    """JSON text, indented, with Decimals as exact strings."""
    return json.dumps(data, indent=2, default=_default, ensure_ascii=False) + "\n"


def to_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """CSV text with a header row; None is an empty cell, dicts and lists are JSON."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return out.getvalue()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=_default)
    return str(value)


def emit(text: str, output: Path | None = None) -> None:
    """Write machine-readable output to ``output`` or stdout, untouched by Rich (no wrapping, no markup)."""
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        output.write_text(text, encoding="utf-8")
