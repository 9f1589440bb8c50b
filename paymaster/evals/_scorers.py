"""Scorers: is an agent's output a right answer? exact, contains, JSON field, number, Python, recorded."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from .._files import load_module

_EDGE = ".,;:!?\"'`()[]{}*_ \n\t"
_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def normalise(text: str, *, case_sensitive: bool = False) -> str:
    """Collapse whitespace and strip surrounding punctuation (and case, unless asked to keep it)."""
    out = " ".join(text.split()).strip(_EDGE)
    return out if case_sensitive else out.casefold()


@dataclass(frozen=True)
class Exact:
    """Right when the output equals the expected text (normalised unless ``normalize`` is false)."""

    value: str
    case_sensitive: bool = False
    normalize: bool = True
    kind: Literal["exact"] = "exact"


@dataclass(frozen=True)
class Contains:
    """Right when the output contains all (or any) of ``values``."""

    values: tuple[str, ...]
    mode: Literal["all", "any"] = "all"
    case_sensitive: bool = False
    kind: Literal["contains"] = "contains"


@dataclass(frozen=True)
class JsonField:
    """Right when the output's JSON has ``value`` at ``field`` (a dotted path such as "a.b.0")."""

    field: str
    value: Any
    kind: Literal["json_field"] = "json_field"


@dataclass(frozen=True)
class Numeric:
    """Right when the output's last (or first) number is within ``tolerance`` of ``value``."""

    value: Decimal
    tolerance: Decimal = Decimal(0)
    relative: bool = False
    pick: Literal["first", "last"] = "last"
    kind: Literal["numeric"] = "numeric"


@dataclass(frozen=True)
class PythonScorer:
    """Right when ``function(output, expected)`` returns true (or a number >= 0.5)."""

    target: str
    function: Callable[[str, Any], object]
    kind: Literal["python"] = "python"


@dataclass(frozen=True)
class Recorded:
    """Right when the replay file recorded the answering model's answer to this input as correct."""

    kind: Literal["recorded"] = "recorded"


ScorerSpec = Exact | Contains | JsonField | Numeric | PythonScorer | Recorded


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether an output was right, and a short note why (shown for failures)."""

    correct: bool
    detail: str


def _decimal(value: object, what: str) -> Decimal:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, got {value!r}")
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not d.is_finite():
        raise ValueError(f"{what} must be finite, got {value!r}")
    return d


def _load_function(target: str, base_dir: Path) -> Callable[[str, Any], object]:
    module_name, _, attr = target.rpartition(":")
    if not module_name or not attr:
        raise ValueError(f"python scorer {target!r} must be 'module:function' or 'path/to/file.py:function'")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name) if Path(module_name).is_absolute() else base_dir / module_name
            module = load_module(path, prefix="paymaster_scorer")
        else:
            module = load_module(module_name)
    except FileNotFoundError:
        raise ValueError(f"python scorer file {module_name} does not exist") from None
    except ImportError as exc:
        raise ValueError(f"python scorer {target!r} cannot be imported: {exc}") from None
    function = getattr(module, attr, None)
    if not callable(function):
        raise ValueError(f"python scorer {target!r}: {module_name} has no function {attr!r}")
    result: Callable[[str, Any], object] = function
    return result


def parse_scorer(raw: object, expected: Any, has_expected: bool, base_dir: Path) -> ScorerSpec:
    """Build a scorer from a line's ``scorer`` and ``expected`` fields; a ValueError says what is wrong."""
    if raw is None:
        if not has_expected:
            raise ValueError("give 'expected' (scored by exact match) or a 'scorer'")
        raw = "numeric" if isinstance(expected, int | float) and not isinstance(expected, bool) else "exact"
    if isinstance(raw, str):
        raw = {"kind": raw} if ":" not in raw else {"kind": "python", "function": raw}
    if not isinstance(raw, dict) or not isinstance(raw.get("kind"), str):
        raise ValueError(f"'scorer' must be a name such as \"contains\" or an object with a \"kind\"; got {raw!r}")
    opts = dict(raw)
    kind = opts.pop("kind")
    allowed = {
        "exact": {"value", "case_sensitive", "normalize"}, "contains": {"values", "mode", "case_sensitive"},
        "json_field": {"field", "value"}, "numeric": {"value", "tolerance", "relative", "pick"},
        "python": {"function"}, "recorded": set(),
    }
    if kind not in allowed:
        raise ValueError(f"unknown scorer kind {kind!r}; use one of {sorted(allowed)}")
    unknown = sorted(set(opts) - allowed[kind])
    if unknown:
        raise ValueError(f"scorer {kind!r} has unknown option(s) {unknown}; allowed: {sorted(allowed[kind])}")
    value = opts.get("value", expected)
    for flag in ("case_sensitive", "normalize", "relative"):
        if flag in opts and not isinstance(opts[flag], bool):
            raise ValueError(f"scorer option {flag!r} must be true or false")
    if kind == "exact":
        if not isinstance(value, str):
            raise ValueError(f"scorer 'exact' needs a string 'expected' (or 'value'), got {value!r}")
        return Exact(value, opts.get("case_sensitive", False), opts.get("normalize", True))
    if kind == "contains":
        values = opts.get("values", expected)
        values = [values] if isinstance(values, str) else values
        if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
            raise ValueError("scorer 'contains' needs 'values' (or 'expected'): a string or a list of strings")
        if opts.get("mode", "all") not in ("all", "any"):
            raise ValueError(f"scorer 'contains': mode must be 'all' or 'any', got {opts['mode']!r}")
        return Contains(tuple(values), opts.get("mode", "all"), opts.get("case_sensitive", False))
    if kind == "json_field":
        if not isinstance(opts.get("field"), str) or not opts["field"]:
            raise ValueError("scorer 'json_field' needs 'field', a dotted path such as \"label\" or \"items.0.id\"")
        if "value" not in opts and not has_expected:
            raise ValueError("scorer 'json_field' needs the expected value in 'value' or 'expected'")
        return JsonField(opts["field"], value)
    if kind == "numeric":
        if value is None:
            raise ValueError("scorer 'numeric' needs the expected number in 'expected' or 'value'")
        tolerance = _decimal(opts.get("tolerance", 0), "scorer 'numeric': tolerance")
        if tolerance < 0:
            raise ValueError("scorer 'numeric': tolerance must be >= 0")
        if opts.get("pick", "last") not in ("first", "last"):
            raise ValueError(f"scorer 'numeric': pick must be 'first' or 'last', got {opts['pick']!r}")
        return Numeric(_decimal(value, "scorer 'numeric': expected"), tolerance, opts.get("relative", False),
                       opts.get("pick", "last"))
    if kind == "python":
        target = opts.get("function")
        if not isinstance(target, str):
            raise ValueError("scorer 'python' needs 'function': \"module:function\" or \"file.py:function\"")
        return PythonScorer(target, _load_function(target, base_dir))
    return Recorded()


def _json_in(text: str) -> Any:
    candidates = [text.strip(), *(m.strip() for m in _FENCE.findall(text))]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start:end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            continue
    raise ValueError("no JSON object in the output")


def _at(data: Any, path: Sequence[str]) -> Any:
    for part in path:
        if isinstance(data, list) and part.lstrip("-").isdigit():
            data = data[int(part)]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            raise KeyError(part)
    return data


def _same(got: Any, want: Any) -> bool:
    if isinstance(got, str) and isinstance(want, str):
        return normalise(got) == normalise(want)
    numbers = (int, float)
    if isinstance(got, numbers) and isinstance(want, numbers) and not isinstance(got, bool) \
            and not isinstance(want, bool):
        return Decimal(str(got)) == Decimal(str(want))
    return bool(got == want)


def score(spec: ScorerSpec, output: str, *, expected: Any = None, recorded: bool | None = None) -> Verdict:
    """Judge ``output``; a Python scorer also gets ``expected``, the ``recorded`` scorer the replay's verdict."""
    if isinstance(spec, Exact):
        got, want = output, spec.value
        if spec.normalize:
            got, want = normalise(got, case_sensitive=spec.case_sensitive), normalise(
                want, case_sensitive=spec.case_sensitive)
        elif not spec.case_sensitive:
            got, want = got.casefold(), want.casefold()
        return Verdict(got == want, f"expected {spec.value!r}")
    if isinstance(spec, Contains):
        haystack = output if spec.case_sensitive else output.casefold()
        found = [v for v in spec.values if (v if spec.case_sensitive else v.casefold()) in haystack]
        ok = len(found) == len(spec.values) if spec.mode == "all" else bool(found)
        missing = [v for v in spec.values if v not in found]
        return Verdict(ok, "contains all" if ok else f"missing {missing}")
    if isinstance(spec, JsonField):
        try:
            got = _at(_json_in(output), spec.field.split("."))
        except ValueError as exc:
            return Verdict(False, str(exc))
        except (KeyError, IndexError):
            return Verdict(False, f"no field {spec.field!r} in the output's JSON")
        return Verdict(_same(got, spec.value), f"{spec.field} = {got!r}, expected {spec.value!r}")
    if isinstance(spec, Numeric):
        numbers = _NUMBER.findall(output)
        if not numbers:
            return Verdict(False, "no number in the output")
        got_number = Decimal(numbers[-1 if spec.pick == "last" else 0].replace(",", ""))
        allowed = spec.tolerance * abs(spec.value) if spec.relative else spec.tolerance
        return Verdict(abs(got_number - spec.value) <= allowed, f"got {got_number}, expected {spec.value}")
    if isinstance(spec, PythonScorer):
        try:
            result = spec.function(output, expected)
        except Exception as exc:  # a scorer's bug fails its item visibly instead of stopping the whole eval
            return Verdict(False, f"{spec.target} raised {type(exc).__name__}: {exc}")
        ok = result >= 0.5 if isinstance(result, int | float) and not isinstance(result, bool) else bool(result)
        return Verdict(ok, f"{spec.target} -> {result!r}")
    if recorded is None:
        return Verdict(False, "no recorded verdict for this input and model (use --replay)")
    return Verdict(recorded, "recorded verdict")
