"""Tools: typed Python functions a model may call, each optionally priced per call."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, get_type_hints, overload

import anyio
from pydantic import BaseModel, ValidationError, create_model

from ..errors import ConfigurationError
from ..providers._types import ToolSpec
from ._rates import Rate


@dataclass(frozen=True)
class ToolPolicy:
    """Who may call a tool, and when a person must approve a call (per task).

    ``roles``: only agents whose ``role`` is one of these (None: any agent).
    ``min_budget_usd``: only tasks whose USD budget is at least this (a premium
    tool for well-funded tasks). ``approve_after_calls``: calls past this many
    in one task each need the runtime's approver; ``approve_over_usd``: so do
    calls once the task has spent this much on the tool. ``rate``: how often
    any agent may call it (``Rate(calls_per_minute=10)``), across every task
    and process on the ledger.
    """

    roles: frozenset[str] | None = None
    min_budget_usd: Decimal | None = None
    approve_after_calls: int | None = None
    approve_over_usd: Decimal | None = None
    rate: Rate | None = None

    def __post_init__(self) -> None:
        if self.rate is not None and not isinstance(self.rate, Rate):
            raise ConfigurationError(f"tool policy: rate must be a paymaster.Rate, got {type(self.rate).__name__}")
        for name in ("min_budget_usd", "approve_over_usd"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, Decimal) or not value.is_finite() or value < 0):
                raise ConfigurationError(f"tool policy: {name} must be a dollar amount >= 0, got {value!r}")
        if self.approve_after_calls is not None and (
            not isinstance(self.approve_after_calls, int) or self.approve_after_calls < 0
        ):
            raise ConfigurationError(
                f"tool policy: approve_after_calls must be a count >= 0, got {self.approve_after_calls!r}"
            )


@dataclass(frozen=True)
class Tool:
    """A function the model can call; ``price_usd`` is charged per call against the budget."""

    fn: Callable[..., Any]
    name: str
    description: str
    price_usd: Decimal | None
    arguments: type[BaseModel] = field(repr=False)
    policy: ToolPolicy = field(default_factory=ToolPolicy)

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any] | Tool,
        *,
        name: str | None = None,
        price_usd: Decimal | str | None = None,
        policy: ToolPolicy | None = None,
    ) -> Tool:
        """Build a tool from a type-annotated function; its docstring is the description."""
        if isinstance(fn, Tool):
            return fn
        if not callable(fn):
            raise ConfigurationError(f"a tool must be a function, got {fn!r}")
        tool_name = name or fn.__name__
        hints = get_type_hints(fn)
        fields: dict[str, Any] = {}
        for param in inspect.signature(fn).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ConfigurationError(f"tool {tool_name!r}: *args/**kwargs cannot be described to a model")
            if param.name not in hints:
                raise ConfigurationError(
                    f"tool {tool_name!r}: parameter {param.name!r} needs a type annotation so the model "
                    "knows what to pass"
                )
            default = ... if param.default is param.empty else param.default
            fields[param.name] = (hints[param.name], default)
        price = None if price_usd is None else Decimal(str(price_usd))
        if price is not None and (not price.is_finite() or price < 0):
            raise ConfigurationError(f"tool {tool_name!r}: price_usd must be >= 0, got {price_usd!r}")
        model = create_model(f"{tool_name}_arguments", **fields)
        return cls(fn, tool_name, inspect.getdoc(fn) or "", price, model, policy or ToolPolicy())

    def spec(self) -> ToolSpec:
        """The tool as offered to a model: name, description, JSON schema of its arguments."""
        schema = self.arguments.model_json_schema()
        schema.pop("title", None)
        return ToolSpec(name=self.name, description=self.description, parameters=schema)

    async def invoke(self, arguments: dict[str, Any]) -> str:
        """Validate ``arguments``, run the function (sync ones in a worker thread) and return text."""
        try:
            parsed = self.arguments.model_validate(arguments)
        except ValidationError as exc:
            return f"error: invalid arguments for {self.name}: {exc.errors(include_url=False)}"
        kwargs = dict(parsed)
        if inspect.iscoroutinefunction(self.fn):
            result = await self.fn(**kwargs)
        else:
            result = await anyio.to_thread.run_sync(lambda: self.fn(**kwargs))
        return result if isinstance(result, str) else json.dumps(result, default=str)


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *,
    name: str | None = None,
    price_usd: Decimal | str | None = None,
    roles: Iterable[str] | None = None,
    min_budget_usd: Decimal | str | None = None,
    approve_after_calls: int | None = None,
    approve_over_usd: Decimal | str | None = None,
    rate: Rate | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    price_usd: Decimal | str | None = None,
    roles: Iterable[str] | None = None,
    min_budget_usd: Decimal | str | None = None,
    approve_after_calls: int | None = None,
    approve_over_usd: Decimal | str | None = None,
    rate: Rate | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Decorator: a typed function as a Tool, optionally priced and guarded (see ``ToolPolicy``).

    ``@tool(price_usd="0.10", min_budget_usd="1", approve_after_calls=50, rate=Rate(calls_per_minute=10))``.
    """
    if fn is not None:
        return Tool.from_function(fn)
    policy = ToolPolicy(
        roles=None if roles is None else frozenset([roles] if isinstance(roles, str) else roles),
        min_budget_usd=_dollars(min_budget_usd, "min_budget_usd"),
        approve_after_calls=approve_after_calls,
        approve_over_usd=_dollars(approve_over_usd, "approve_over_usd"),
        rate=rate,
    )
    return lambda f: Tool.from_function(f, name=name, price_usd=price_usd, policy=policy)


def _dollars(value: Decimal | str | None, name: str) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except ArithmeticError:
        raise ConfigurationError(
            f"tool policy: {name} must be dollars as a string such as \"1.50\", got {value!r}"
        ) from None
