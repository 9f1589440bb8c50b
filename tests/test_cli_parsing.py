"""Options parse to the same values and the same errors with or without the Pydantic-free path (cli/_parsing.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import pytest
import typer
from typer.testing import CliRunner

from paymaster.cli._parsing import PlainCommand, PlainGroup

runner = CliRunner()


def _echo(
    name: Annotated[str, typer.Argument()],
    count: Annotated[int, typer.Option()] = 3,
    small: Annotated[int, typer.Option(min=1, max=5)] = 2,
    label: Annotated[str | None, typer.Option()] = None,
    out: Annotated[Path | None, typer.Option(dir_okay=False)] = None,
    fmt: Annotated[Literal["text", "json"], typer.Option("--format")] = "text",
    tag: Annotated[list[str] | None, typer.Option()] = None,
    wide: Annotated[bool, typer.Option("--wide/--narrow")] = False,
) -> None:
    print(json.dumps({"name": name, "count": count, "small": small, "label": label,
                      "out": None if out is None else str(out), "fmt": fmt, "tag": tag, "wide": wide}))


def _apps() -> tuple[typer.Typer, typer.Typer]:
    typer_own = typer.Typer(add_completion=False)
    typer_own.command("echo")(_echo)
    typer_own.command("other")(lambda: None)
    ours = typer.Typer(add_completion=False, cls=PlainGroup)
    ours.command("echo", cls=PlainCommand)(_echo)
    ours.command("other", cls=PlainCommand)(lambda: None)
    return typer_own, ours


@pytest.mark.parametrize("args", [
    ["echo", "a"],
    ["echo", "a", "--count", "12", "--label", "x y", "--out", "f.txt", "--format", "json", "--tag", "k=v",
     "--tag", "k2=v2", "--wide"],
    ["echo", "0", "--count", "0"],
    ["echo", "a", "--count", "007"],  # leading zeros, a sign, spaces: Typer's own conversion decides
    ["echo", "a", "--count", "-4"],
    ["echo", "a", "--count", " 5 "],
    ["echo", "a", "--count", "1_000"],
    ["echo", "a", "--count", "abc"],
    ["echo", "a", "--count", "2.5"],
    ["echo", "a", "--small", "9"],
    ["echo", "a", "--format", "xml"],
    ["echo", "a", "--out", "."],
    ["echo"],
    ["echo", "--help"],
])
def test_values_and_errors_match_typers_own_parsing(args: list[str]) -> None:
    typer_own, ours = _apps()
    expected = runner.invoke(typer_own, args, env={"COLUMNS": "120"})
    got = runner.invoke(ours, args, env={"COLUMNS": "120"})
    assert (got.exit_code, got.output) == (expected.exit_code, expected.output)
    assert isinstance(got.exception, SystemExit) or got.exception is None


def test_plain_values_arrive_with_their_types() -> None:
    _, ours = _apps()
    result = runner.invoke(ours, ["echo", "n", "--count", "42", "--label", "007"])
    assert json.loads(result.output) == {"name": "n", "count": 42, "small": 2, "label": "007", "out": None,
                                         "fmt": "text", "tag": None, "wide": False}
