"""The LLM planner: a capable model splits a task into complexity-tagged subtasks, as structured JSON.

One plan request goes to the planner tier through ``PlanContext.call`` (so it
is budgeted and recorded as a ``plan`` step). A reply that is not a valid plan
gets exactly one repair request carrying the problems found; a second invalid
reply raises ``PlanInvalid`` with those problems and the raw reply.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from importlib import resources
from string import Template
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..providers._types import Message, ModelRequest, ModelResponse
from ._plan import Complexity, Plan, PlanContext, PlanInvalid, Subtask

# -- the wire shape the model is asked for ----------------------------------


class _SubtaskWire(BaseModel):
    # extra="forbid": a misspelt key (say "dependencies") must be reported and
    # repaired, not silently dropped along with the dependencies it carried.
    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Short unique id, lowercase with underscores.")
    goal: str = Field(description="Self-contained instruction: everything the subtask needs from the task.")
    complexity: Complexity = Field(description="simple, moderate or complex: pick the cheapest that will do.")
    depends_on: list[str] = Field(default_factory=list, description="Ids of subtasks whose output this one needs.")
    expected_output: str = Field(default="", description="One short line: what the subtask returns.")


class _PlanWire(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subtasks: list[_SubtaskWire] = Field(description="As few subtasks as the task needs.")


def _provider_friendly(node: Any, defs: dict[str, Any]) -> Any:
    """``node`` with $refs inlined, titles and defaults dropped, every object closed and fully required."""
    if isinstance(node, list):
        return [_provider_friendly(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        # Siblings of a $ref (a field's description) override the referenced definition's own.
        target = defs[str(node["$ref"]).rsplit("/", 1)[-1]]
        return _provider_friendly({**target, **{k: v for k, v in node.items() if k != "$ref"}}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("$defs", "title", "default"):
            continue
        if key == "properties":
            out[key] = {name: _provider_friendly(sub, defs) for name, sub in value.items()}
        else:
            out[key] = _provider_friendly(value, defs)
    if "properties" in out:
        # Strict structured output (OpenAI) wants every property required and
        # no extra keys; the parser still forgives a missing optional field.
        out["required"] = list(out["properties"])
        out["additionalProperties"] = False
    return out


@cache
def _schema() -> dict[str, Any]:
    raw = _PlanWire.model_json_schema()
    schema: dict[str, Any] = _provider_friendly(raw, raw.get("$defs", {}))
    return schema


def plan_schema() -> dict[str, Any]:
    """The JSON schema of a plan reply: no $refs, every object closed and fully required."""
    # A deep copy through JSON, so a caller cannot alter the cached schema every request shares.
    copied: dict[str, Any] = json.loads(json.dumps(_schema()))
    return copied


# -- prompts (data files next to this module) --------------------------------


@cache
def _prompt(name: str) -> Template:
    text = resources.files("paymaster.planners").joinpath("prompts", name).read_text(encoding="utf-8")
    return Template(text)


# -- validating a reply -----------------------------------------------------

_FENCE = re.compile(r"```[A-Za-z]*[ \t]*\n?(.*?)```", re.DOTALL)
_MAX_LISTED_ERRORS = 20
_MAX_ECHOED_CHARS = 8_000
# Errors where the offending value helps the model fix it (a wrong enum value, a wrong type).
_SHOW_INPUT = frozenset({"enum", "string_type", "list_type", "string_too_long", "string_too_short"})


def _load_json(text: str) -> tuple[Any, str | None]:
    """The JSON value in ``text`` (bare, or inside a ``` fence) and None, or None and why it failed."""
    candidates = [text.strip(), *(m.group(1).strip() for m in _FENCE.finditer(text))]
    first_error: str | None = None
    for candidate in candidates:
        try:
            return json.loads(candidate), None
        except json.JSONDecodeError as exc:
            first_error = first_error or f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if not text.strip():
        return None, "the reply is empty; it must be a JSON object with a 'subtasks' array"
    return None, f"the reply is not valid JSON ({first_error}); it must be a JSON object with a 'subtasks' array"


def _location(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _describe(exc: ValidationError) -> list[str]:
    """One readable line per validation error, e.g. ``subtasks[2].complexity: Input should be ... (got 'hard')``."""
    lines = []
    for error in exc.errors(include_url=False):
        message = error["msg"].removeprefix("Value error, ")
        given = error.get("input")
        if error["type"] in _SHOW_INPUT:
            message += f" (got {json.dumps(given, default=str)[:60]})"
        where = _location(tuple(error["loc"]))
        lines.append(f"{where}: {message}" if where else message)
    return lines


def check_reply(text: str, max_subtasks: int, *, truncated: bool = False) -> Plan | list[str]:
    """The plan in a planner reply, or the list of problems that make it unusable."""
    data, error = _load_json(text)
    if error is not None:
        if truncated:
            error += "; the reply was cut off at its max_tokens: use fewer subtasks and shorter goals"
        return [error]
    if isinstance(data, list):
        data = {"subtasks": data}  # a bare array of subtasks is unambiguous: accept it rather than pay a repair
    if not isinstance(data, dict):
        return [f"the reply must be a JSON object with a 'subtasks' array, got {type(data).__name__}"]
    try:
        wire = _PlanWire.model_validate(data)
    except ValidationError as exc:
        return _describe(exc)
    if not wire.subtasks:
        return ["the plan has no subtasks; give at least one"]
    problems: list[str] = []
    if len(wire.subtasks) > max_subtasks:
        problems.append(
            f"the plan has {len(wire.subtasks)} subtasks; at most {max_subtasks} are allowed: "
            "merge steps and use as few subtasks as the task needs"
        )
    try:
        plan = Plan.model_validate({"subtasks": [s.model_dump() for s in wire.subtasks]})
    except ValidationError as exc:
        problems.extend(_describe(exc))
    return problems or plan


def _bulleted(problems: list[str]) -> str:
    shown = [f"- {p}" for p in problems[:_MAX_LISTED_ERRORS]]
    if len(problems) > _MAX_LISTED_ERRORS:
        shown.append(f"- ... and {len(problems) - _MAX_LISTED_ERRORS} more")
    return "\n".join(shown)


def _echo(text: str) -> str:
    # The previous reply goes back to the model so it can fix rather than
    # restart; clipped, because every prompt byte is reserved against the budget.
    if not text.strip():
        return "(empty reply)"
    if len(text) <= _MAX_ECHOED_CHARS:
        return text
    return f"{text[:_MAX_ECHOED_CHARS]}\n... [{len(text) - _MAX_ECHOED_CHARS} more characters cut]"


# -- skipping the planner for simple inputs ----------------------------------

_SENTENCE_END = re.compile(r"[.!?;](?:\s+|$)")
_SEQUENCING = re.compile(r"\b(and|then|afterwards|finally|also|next|steps?)\b|\d\)", re.IGNORECASE)


def is_simple(goal: str, *, max_words: int = 30) -> bool:
    """True for a short, single-sentence input with no "and"/"then"-like joins: a heuristic, erring towards planning."""
    text = goal.strip()
    if not text or "\n" in text or len(text.split()) > max_words:
        return False
    # One sentence or question: at most one terminator, and only at the very end.
    ends = list(_SENTENCE_END.finditer(text))
    if len(ends) > 1 or (ends and ends[0].end() != len(text)):
        return False
    return _SEQUENCING.search(text) is None


# -- the planner --------------------------------------------------------------


class LLMPlanner:
    """Asks the planner tier for a JSON plan, validates it, and repairs it at most once.

    ``skip_if``: a predicate on the task input (``is_simple`` is one); when it
    returns True the plan is the single subtask ``main``, tagged simple, and no
    model is called. ``max_tokens``: the plan reply's cap, by default room for
    ``max_subtasks`` subtasks (it is also what the budget reserves for output).
    """

    def __init__(self, *, skip_if: Callable[[str], bool] | None = None, max_tokens: int | None = None) -> None:
        if max_tokens is not None and max_tokens <= 0:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        self.skip_if = skip_if
        self.max_tokens = max_tokens

    async def plan(self, goal: str, ctx: PlanContext) -> Plan:
        """Return a validated plan for ``goal`` or raise PlanInvalid after one failed repair."""
        if self.skip_if is not None and self.skip_if(goal):
            return Plan(subtasks=(Subtask(id="main", goal=goal, complexity=Complexity.SIMPLE),))
        task = Message(role="user", content=goal)
        reply = await ctx.call(self._request(ctx, (task,)))
        found = _check(reply, ctx.max_subtasks)
        if isinstance(found, Plan):
            return found
        repair = _prompt("repair.md").substitute(errors=_bulleted(found), max_subtasks=ctx.max_subtasks)
        messages = (task, Message(role="assistant", content=_echo(reply.text)), Message(role="user", content=repair))
        second = await ctx.call(self._request(ctx, messages))
        again = _check(second, ctx.max_subtasks)
        if isinstance(again, Plan):
            return again
        raise PlanInvalid(
            f"the planner's reply was not a valid plan, even after one repair request:\n{_bulleted(again)}",
            second.text,
        )

    def _request(self, ctx: PlanContext, messages: tuple[Message, ...]) -> ModelRequest:
        return ModelRequest(
            model=ctx.model,
            system=_prompt("plan.md").substitute(max_subtasks=ctx.max_subtasks),
            messages=messages,
            max_tokens=self.max_tokens or default_max_tokens(ctx.max_subtasks),
            json_schema=plan_schema(),
        )


def default_max_tokens(max_subtasks: int) -> int:
    """A plan reply's token cap: room for ``max_subtasks`` subtasks of a few lines each, and no more."""
    return 256 + 192 * max(max_subtasks, 1)


def _check(reply: ModelResponse, max_subtasks: int) -> Plan | list[str]:
    return check_reply(reply.text, max_subtasks, truncated=reply.finish_reason == "length")
