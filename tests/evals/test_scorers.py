"""Each scorer: exact, contains, JSON field, numeric tolerance, Python function and recorded verdicts."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from paymaster.evals._scorers import (
    Contains,
    Exact,
    JsonField,
    Numeric,
    PythonScorer,
    Recorded,
    ScorerSpec,
    parse_scorer,
    score,
)


def spec(raw: object, expected: Any = None) -> ScorerSpec:
    return parse_scorer(raw, expected, expected is not None, Path("."))


@pytest.mark.parametrize(
    ("output", "ok"),
    [("billing", True), ("Billing.", True), ("  BILLING \n", True), ('"billing"', True), ("billing issue", False),
     ("bill", False)],
)
def test_exact_normalises_case_space_and_edge_punctuation(output: str, ok: bool) -> None:
    assert score(spec("exact", "billing"), output).correct is ok


def test_exact_can_be_strict() -> None:
    strict = Exact("Billing", case_sensitive=True, normalize=False)
    assert score(strict, "Billing").correct
    assert not score(strict, "billing").correct
    assert not score(strict, "Billing.").correct


def test_contains_all_and_any() -> None:
    all_of = spec({"kind": "contains", "values": ["42,000", "18%"]})
    assert score(all_of, "Tickets rose 18% to 42,000.").correct
    verdict = score(all_of, "Tickets rose to 42,000.")
    assert not verdict.correct and "18%" in verdict.detail
    any_of = Contains(("refund", "credit"), mode="any")
    assert score(any_of, "We issued a CREDIT note").correct
    assert not score(any_of, "nothing").correct


def test_contains_takes_expected_as_its_value() -> None:
    assert score(spec("contains", "Lisbon"), "Our office is in lisbon").correct


def test_json_field_reads_nested_paths_in_fenced_or_embedded_json() -> None:
    label = JsonField("label", "billing")
    assert score(label, '{"label": "Billing"}').correct
    assert score(label, 'Here you go:\n```json\n{"label": "billing", "p": 0.9}\n```').correct
    assert score(label, 'Sure! {"label": "billing"} hope that helps').correct
    nested = JsonField("items.1.qty", 3)
    assert score(nested, '{"items": [{"qty": 1}, {"qty": 3.0}]}').correct
    assert not score(nested, '{"items": [{"qty": 1}]}').correct
    assert "no JSON object" in score(label, "billing").detail
    assert "no field 'label'" in score(label, '{"category": "billing"}').detail


def test_numeric_tolerance_absolute_and_relative() -> None:
    exact = spec("numeric", 42)
    assert score(exact, "The answer is 42.").correct
    assert score(exact, "6 x 7 = 42").correct  # the last number by default
    assert not score(Numeric(Decimal(6), pick="last"), "6 x 7 = 42").correct
    assert score(Numeric(Decimal(6), pick="first"), "6 x 7 = 42").correct
    assert score(Numeric(Decimal("42000")), "about 42,000 tickets").correct
    near = Numeric(Decimal("3.14"), tolerance=Decimal("0.01"))
    assert score(near, "pi is 3.1416").correct
    assert not score(near, "pi is 3.2").correct
    relative = Numeric(Decimal(1000), tolerance=Decimal("0.05"), relative=True)
    assert score(relative, "1049").correct and not score(relative, "1051").correct
    assert score(exact, "no digits here").detail == "no number in the output"


def test_python_scorer_gets_output_and_expected(tmp_path: Path) -> None:
    (tmp_path / "sc.py").write_text(
        "def overlap(output, expected):\n"
        "    a, b = set(output.split()), set(expected.split())\n"
        "    return len(a & b) / len(b)\n"
    )
    scorer = parse_scorer({"kind": "python", "function": "sc.py:overlap"}, "x", True, tmp_path)
    assert isinstance(scorer, PythonScorer)
    assert score(scorer, "red green", expected="red green blue blue").correct  # 2/3 >= 0.5
    assert not score(scorer, "red", expected="red green blue").correct  # 1/3
    module_scorer = parse_scorer("operator:contains", "a", True, tmp_path)  # any importable module:function
    assert score(module_scorer, "a b c", expected="a").correct
    crashing = parse_scorer("operator:truediv", None, False, tmp_path)
    verdict = score(crashing, "text", expected=None)
    assert not verdict.correct and "raised TypeError" in verdict.detail


def test_recorded_uses_the_replay_verdict() -> None:
    assert score(Recorded(), "anything", recorded=True).correct
    assert not score(Recorded(), "anything", recorded=False).correct
    assert "no recorded verdict" in score(Recorded(), "anything").detail
