"""Budgets: caps as a value object, checked before every call."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, StrictInt, field_validator

from .._checked import CheckedModel, dollars
from .._money import to_picos
from ..ledger import Caps

NonNegativeUSD = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
Count = Annotated[StrictInt, Field(ge=0)]


class Budget(CheckedModel):
    """Hard caps; ``None`` means no cap on that dimension.

    ``usd`` accepts a string, int or Decimal (``"0.05"``). ``tokens`` caps input
    plus output tokens, ``steps`` model calls, ``tool_calls`` tool calls,
    ``wall_seconds`` the task's wall-clock time, ``retries`` and ``retry_usd``
    what retries of failed calls may use, ``depth`` how deep sub-agents may nest.
    """

    noun = "cap"

    usd: NonNegativeUSD | None = None
    tokens: Count | None = None
    steps: Count | None = None
    tool_calls: Count | None = None
    wall_seconds: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    retries: Count | None = None
    retry_usd: NonNegativeUSD | None = None
    depth: Count | None = None

    if TYPE_CHECKING:
        # What type checkers see: dollars may be written as strings ("2.50"), as the docs do.
        def __init__(
            self,
            *,
            usd: Decimal | str | int | float | None = None,
            tokens: int | None = None,
            steps: int | None = None,
            tool_calls: int | None = None,
            wall_seconds: float | None = None,
            retries: int | None = None,
            retry_usd: Decimal | str | int | float | None = None,
            depth: int | None = None,
        ) -> None: ...

    @field_validator("usd", "retry_usd", mode="before")
    @classmethod
    def _no_float_money(cls, value: Any) -> Any:
        return dollars(value, "2.50")

    def merged(self, override: Budget | None) -> Budget:
        """This budget with every cap that ``override`` sets replaced by the override's."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_none=True))

    def caps(self) -> Caps:
        """The spend caps in ledger units (pico-dollars, tokens, calls, tool calls)."""
        return Caps(
            picos=None if self.usd is None else to_picos(self.usd),
            tokens=self.tokens,
            calls=self.steps,
            tool_calls=self.tool_calls,
        )

    def retry_caps(self) -> Caps:
        """Caps of the retry account: retries count as calls, retry_usd as money."""
        return Caps(picos=None if self.retry_usd is None else to_picos(self.retry_usd), calls=self.retries)

    def spend_only(self) -> bool:
        """True when only caps that an account can hold are set (no time, retry or depth caps)."""
        return self.wall_seconds is None and self.retries is None and self.retry_usd is None and self.depth is None

