"""Settings objects (a Budget, a Rate) that refuse bad input with a ConfigurationError naming the field.

Dollars are never floats: a float given for a dollar field goes through its
repr (``0.1`` becomes ``"0.1"``, the number the user wrote), and a bool is refused.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigurationError


class CheckedModel(BaseModel):
    """A frozen pydantic model whose validation errors are ConfigurationErrors, one clause per bad field."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    noun: ClassVar[str] = "setting"  # what one field is, in messages: "cap", "limit"

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigurationError(self.describe(exc)) from None

    @classmethod
    def describe(cls, exc: ValidationError) -> str:
        """One clause per bad field: the field, what was wrong with it and the value given."""
        name, problems = cls.__name__, []
        for err in exc.errors(include_url=False):
            field = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                problems.append(f"{name}({field}=...) is not a {cls.noun}; the {cls.noun}s are "
                                f"{', '.join(cls.model_fields)}")
            elif field:
                problems.append(f"{name}({field}=...): {err['msg']}, got {err['input']!r}")
            else:
                problems.append(f"{name}(): {err['msg'].removeprefix('Value error, ')}")
        return "; ".join(problems)


def dollars(value: Any, example: str) -> Any:
    """A dollar field's input as pydantic should parse it: a float by its repr; a bool refused."""
    if isinstance(value, float):
        return str(value)  # 0.1 is not the number the user wrote; its repr is
    if isinstance(value, bool):
        raise ValueError(f"must be a number of dollars such as \"{example}\", not a bool")
    return value
