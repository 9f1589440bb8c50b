"""Golden-set parsing: good files load; every bad line is an error naming its line and what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paymaster.errors import ConfigurationError
from paymaster.evals import GoldenSetError, load_golden
from paymaster.evals._scorers import Contains, Exact, Numeric, PythonScorer, Recorded

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "golden.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_good_file_loads_with_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "# comments and blank lines are skipped",
        "",
        json.dumps({"id": "a", "input": "Charged twice", "expected": "billing", "task_type": "billing",
                    "tags": {"channel": "email"}}),
        json.dumps({"input": "What is 6 x 7?", "expected": 42}),
        json.dumps({"id": 7, "input": "Summarise it", "scorer": {"kind": "contains", "values": ["42"]}}),
        json.dumps({"input": "recorded one", "scorer": "recorded"}),
    )
    items = load_golden(path)
    assert [i.id for i in items] == ["a", "line-4", "7", "line-6"]
    assert isinstance(items[0].scorer, Exact) and items[0].task_type == "billing"
    assert items[0].tags == {"channel": "email"} and items[0].line == 3
    assert isinstance(items[1].scorer, Numeric) and items[1].scorer.value == 42
    assert isinstance(items[2].scorer, Contains) and items[2].scorer.values == ("42",)
    assert isinstance(items[3].scorer, Recorded)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"expected": "x"}', "'input' is required"),
        ('{"input": "  ", "expected": "x"}', "'input' is required"),
        ('{"input": "hi"}', "give 'expected'"),
        ('{"input": "hi", "expected": "x", "colour": "red"}', "unknown field(s) ['colour']"),
        ('{"input": "hi", "expected": "x", "scorer": "fuzzy"}', "unknown scorer kind 'fuzzy'"),
        ('{"input": "hi", "expected": "x", "scorer": {"kind": "exact", "fold": true}}', "unknown option(s) ['fold']"),
        ('{"input": "hi", "expected": "x", "tags": ["a"]}', "'tags' must map strings to strings"),
        ('{"input": "hi", "expected": "x", "task_type": 3}', "'task_type' must be a non-empty string"),
        ('{"input": "hi", "expected": {"a": 1}}', "needs a string 'expected'"),
        ('{"input": "hi", "scorer": {"kind": "contains", "values": []}}', "scorer 'contains' needs 'values'"),
        ('{"input": "hi", "scorer": {"kind": "numeric"}}', "needs the expected number"),
        ('{"input": "hi", "expected": "x", "scorer": {"kind": "numeric"}}', "must be a number"),
        ('{"input": "hi", "expected": 1, "scorer": {"kind": "numeric", "tolerance": -1}}', "tolerance must be >= 0"),
        ('{"input": "hi", "scorer": {"kind": "json_field", "value": 1}}', "needs 'field'"),
        ('{"input": "hi", "scorer": "no_such_module_xyz:f"}', "cannot be imported"),
        ('{"input": "hi", "scorer": "missing.py:f"}', "does not exist"),
        ('{"input": "hi", "expected": "x", "scorer": {"kind": "exact", "normalize": "yes"}}', "true or false"),
    ],
)
def test_a_bad_line_names_its_line_and_the_problem(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path, '{"input": "fine", "expected": "ok"}', line)
    with pytest.raises(GoldenSetError) as info:
        load_golden(path)
    assert f"{path}:2:" in str(info.value)
    assert message in str(info.value)
    assert isinstance(info.value, ConfigurationError)


def test_duplicate_ids_point_at_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, '{"id": "a", "input": "x", "expected": "y"}', '{"id": "a", "input": "z", "expected": "y"}')
    with pytest.raises(GoldenSetError, match=r"golden.jsonl:2: id 'a' is already used on line 1"):
        load_golden(path)


def test_missing_and_empty_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(GoldenSetError, match="does not exist"):
        load_golden(tmp_path / "nope.jsonl")
    with pytest.raises(GoldenSetError, match="has no items"):
        load_golden(write(tmp_path, "# only a comment"))


def test_a_python_scorer_file_resolves_next_to_the_golden_set(tmp_path: Path) -> None:
    (tmp_path / "my_scorers.py").write_text(
        "def first_word(output, expected):\n    return output.split()[0] == expected\n"
    )
    items = load_golden(write(tmp_path, '{"input": "hi", "expected": "yes", "scorer": "my_scorers.py:first_word"}'))
    assert isinstance(items[0].scorer, PythonScorer)
    assert items[0].scorer.function("yes indeed", "yes") is True


@pytest.mark.parametrize("name", ["ticket_triage.jsonl", "summariser.jsonl"])
def test_the_shipped_golden_sets_load(name: str) -> None:
    items = load_golden(REPO / "evals" / "golden" / name)
    assert len(items) >= 5
    assert all(i.task_type for i in items)
