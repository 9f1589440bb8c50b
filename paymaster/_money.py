"""Exact money: Decimal dollars outside, integer pico-dollars inside the ledger.

A pico-dollar is 1e-12 USD. Every per-million-token price with up to six
decimals is a whole number of pico-dollars per token, so costs of real prices
are exact; anything finer is rounded *up*, so spend is never under-stated.
A signed 64-bit column holds up to about 9.2 million dollars per account.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

PICOS_PER_USD = 10**12
_PICO = Decimal(1) / PICOS_PER_USD


def to_picos(usd: Decimal) -> int:
    """Convert dollars to integer pico-dollars, rounding up any sub-pico remainder."""
    return int((usd * PICOS_PER_USD).to_integral_value(rounding=ROUND_CEILING))


def from_picos(picos: int) -> Decimal:
    """Convert integer pico-dollars back to exact dollars."""
    return (Decimal(picos) * _PICO).normalize() if picos else Decimal(0)


def fmt_usd(usd: Decimal | None) -> str:
    """Format dollars for people: unknown stays visible, tiny amounts keep their digits."""
    if usd is None:
        return "unknown"
    text = format(usd.normalize(), "f")
    if "." not in text:
        return f"${text}.00"
    whole, frac = text.split(".")
    return f"${whole}.{frac.ljust(2, '0')}"


def plain_usd(usd: Decimal) -> str:
    """Exact dollars as plain decimal text for exports: "100", "0.000125", never "1E+2"."""
    return format(usd.normalize(), "f")
