"""Budgets: caps as a value object, checked before every call."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from .._money import to_picos
from ..ledger import Caps

NonNegativeUSD = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


class Budget(BaseModel):
    """Hard caps for one task; ``None`` means no cap on that dimension.

    ``usd`` accepts a string, int or Decimal (``"0.05"``); ``tokens`` caps
    input plus output tokens; ``steps`` caps model calls.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    usd: NonNegativeUSD | None = None
    tokens: Annotated[StrictInt, Field(ge=0)] | None = None
    steps: Annotated[StrictInt, Field(ge=0)] | None = None

    @field_validator("usd", mode="before")
    @classmethod
    def _no_float_money(cls, value: Any) -> Any:
        # A float such as 0.1 is not the number the user wrote; go through its repr.
        if isinstance(value, float):
            return str(value)
        if isinstance(value, bool):
            raise ValueError("usd must be a number of dollars such as \"2.50\", not a bool")
        return value

    def merged(self, override: Budget | None) -> Budget:
        """This budget with every cap that ``override`` sets replaced by the override's."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_none=True))

    def caps(self) -> Caps:
        """The caps in ledger units (pico-dollars, tokens, calls)."""
        return Caps(
            picos=None if self.usd is None else to_picos(self.usd),
            tokens=self.tokens,
            calls=self.steps,
        )
