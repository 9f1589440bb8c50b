"""Read RouterBench records (Hu et al., 2024) in the CSV layout of its zero-shot train/test re-split.

Each ``<task>_<split>.csv`` holds, per prompt, every model's 0/1 score, its
response (``<model>|model_response``) and its real USD cost
(``<model>|total_cost``). Prompts and responses are stored as Python list
literals; they are read with ``ast.literal_eval`` (never ``eval``) and their
items joined by newlines. An empty score cell becomes an unknown verdict.
"""

from __future__ import annotations

import ast
import csv
import sys
from pathlib import Path

from ..errors import ConfigurationError
from ..providers._replay import RecordedOutcome, RecordedPrompt, recorded_cost

_COST = "|total_cost"
_RESPONSE = "|model_response"


def _text(cell: str) -> str:
    try:
        value = ast.literal_eval(cell)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return cell
    if isinstance(value, list | tuple):
        return "\n".join(str(v) for v in value)
    return str(value)


def _verdict(cell: str, where: str) -> bool | None:
    if not cell.strip():
        return None
    try:
        return float(cell) >= 0.5
    except ValueError:
        raise ConfigurationError(f"{where}: score {cell!r} is not a number") from None


def routerbench_files(data_dir: str | Path, split: str) -> list[Path]:
    """The ``*_<split>.csv`` files of a RouterBench folder, sorted by name."""
    return sorted(Path(data_dir).glob(f"*_{split}.csv"))


def load_routerbench(data_dir: str | Path, split: str) -> list[RecordedPrompt]:
    """Every prompt of the ``split`` files in ``data_dir`` (e.g. "train", "test"), task type from the file."""
    files = routerbench_files(data_dir, split)
    if not files:
        raise ConfigurationError(f"no RouterBench files *_{split}.csv in {data_dir}")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # responses can be long
    out: list[RecordedPrompt] = []
    for path in files:
        task = path.stem[: -len(split) - 1]
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            models = [c[: -len(_COST)] for c in reader.fieldnames or () if c.endswith(_COST)]
            if not models:
                raise ConfigurationError(f"{path}: no '<model>{_COST}' columns; is this a RouterBench file?")
            for number, row in enumerate(reader, 2):
                where = f"{path.name}:{number}"
                outcomes = {
                    m: RecordedOutcome(
                        response=_text(row.get(m + _RESPONSE) or ""),
                        correct=_verdict(row.get(m) or "", f"{where}: {m}"),
                        cost_usd=recorded_cost(row[m + _COST], f"{where}: {m}"),
                    )
                    for m in models
                }
                out.append(RecordedPrompt(
                    id=row.get("sample_id") or where, prompt=_text(row["prompt"]), outcomes=outcomes,
                    task_type=row.get("eval_name") or task,
                ))
    return out
