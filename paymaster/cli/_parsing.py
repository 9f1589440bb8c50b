"""Option parsing that imports Pydantic only for the values that need it.

Typer converts every option and argument through a Pydantic ``TypeAdapter``,
built when the option is parsed, even when the value is the default ``None``;
importing Pydantic and building the adapters is about 0.1 s, a third of what
``paymaster ledger`` costs to start. Most of our options are plain ``str``,
``int`` and ``bool`` values that need no conversion beyond ``int()``, and most
of the others are left unset. The command classes here give every option a
converter that passes those through (unset stays ``None``, as with Typer) and
hands anything else (``--limit abc``, a ``Path``, a choice) to Typer's own
conversion, so every message and value stays Typer's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer.core

if TYPE_CHECKING:
    from typer._click import Context

try:  # Typer's conversion layer (Typer 0.2x); without it there is nothing to skip
    from typer._coercion import RuntimeParam, build_runtime_param
    from typer.core import _TyperParameter
except ImportError:  # pragma: no cover - an older Typer parses through Click, without Pydantic
    RuntimeParam = None  # type: ignore[assignment,misc]

_PLAIN = (str, int, bool)
_DIGITS = re.compile(r"[0-9]+")  # ASCII digits: int() and Typer (Pydantic) read them alike

if RuntimeParam is not None:

    @dataclass(frozen=True)
    class _PlainValue(RuntimeParam):
        """Passes a value through when it already has the option's plain type; Typer converts the rest."""

        plain: bool = False  # a single str, int or bool with no path checks, choices, range or parser

        def _coerce_value(self, value: Any, param: Any, ctx: Context) -> Any:
            # RuntimeParam.coerce has already answered for None (None, or () for a list).
            if self.plain and type(value) is self.annotation:
                return value
            if self.plain and self.annotation is int and isinstance(value, str) and _DIGITS.fullmatch(value):
                return int(value)
            return build_runtime_param(param.type_descriptor).coerce(value, param=param, ctx=ctx)


def _skip_pydantic(command: typer.core.TyperCommand | typer.core.TyperGroup, ctx: Context) -> None:
    """Gives each option of ``command`` the pass-through converter (once; Typer keeps it on the option)."""
    if RuntimeParam is None:  # pragma: no cover
        return
    for param in command.get_params(ctx):  # --help too, which is not in command.params
        if not isinstance(param, _TyperParameter) or param._runtime_param is not None:
            continue
        desc = param.type_descriptor
        plain = (desc.annotation in _PLAIN and desc.parameter_info.parser is None and param.nargs == 1
                 and not (param.multiple or desc.is_path or desc.is_choice or desc.is_file or desc.is_ranged))
        param._runtime_param = _PlainValue(parameter_info=desc.parameter_info, annotation=desc.annotation,
                                           plain=plain)


class PlainGroup(typer.core.TyperGroup):
    """A Typer group whose plain options skip Pydantic (see the module docstring)."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        """Parses as Typer does, with the pass-through converters in place."""
        _skip_pydantic(self, ctx)
        return super().parse_args(ctx, args)


class PlainCommand(typer.core.TyperCommand):
    """A Typer command whose plain options skip Pydantic (see the module docstring)."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        """Parses as Typer does, with the pass-through converters in place."""
        _skip_pydantic(self, ctx)
        return super().parse_args(ctx, args)
