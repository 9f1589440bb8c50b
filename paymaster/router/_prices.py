"""Which tier is cheaper is a fact of the price book, not of recorded costs; and prices change.

Calibration orders tiers by list price and writes the prices it assumed into
the file it writes; a runtime loading that file warns when its own price
book no longer agrees, because thresholds tuned for one price ratio are not
the cheapest setting at another.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation

from ..pricing import PriceBook
from ._tiers import Tier, TierTable


class RoutingWarning(UserWarning):
    """A routing policy may not do what it was calibrated to do (stale prices, a tier left out, a fallback)."""


def _tier(table: TierTable, name: str) -> Tier | None:
    """The tier called ``name``, or None (recorded model names need not be tiers)."""
    return next((t for t in table.tiers if t.name == name), None)


def _decimal(text: object) -> Decimal | None:
    try:
        return Decimal(str(text))
    except InvalidOperation:
        return None


def list_price(table: TierTable, name: str, book: PriceBook) -> Decimal | None:
    """A tier's list price: input plus output dollars per million tokens (None: not a tier, or no price)."""
    tier = _tier(table, name)
    if tier is None:
        return None
    prices = book.get(tier.provider, tier.model)
    return None if prices is None else prices.base.input + prices.base.output


def price_order(names: Sequence[str], table: TierTable, book: PriceBook) -> list[str] | None:
    """``names`` cheapest first by list price (ties: the tier table's order); None when any price is unknown."""
    known = {n: list_price(table, n, book) for n in names}
    if any(p is None for p in known.values()):
        return None
    return sorted(names, key=lambda n: (known[n], table.rank(n)))


def assumed_prices(names: Sequence[str], table: TierTable, book: PriceBook) -> dict[str, dict[str, str]]:
    """What a calibration file records about each tier's price, for the runtime to compare against."""
    out: dict[str, dict[str, str]] = {}
    for name in names:
        tier = _tier(table, name)
        prices = None if tier is None else book.get(tier.provider, tier.model)
        if tier is None or prices is None:
            continue
        out[name] = {"provider": tier.provider, "model": tier.model,
                     "input_mtok": str(prices.base.input), "output_mtok": str(prices.base.output)}
    return out


def price_drift(assumed: Mapping[str, Mapping[str, str]], table: TierTable, book: PriceBook) -> list[str]:
    """One line per tier whose model or price differs from what calibration assumed."""
    out = []
    for name, was in sorted(assumed.items()):
        now = assumed_prices([name], table, book).get(name)
        if now is None:
            out.append(f"tier {name!r}: calibrated at {was.get('model')} ${was.get('input_mtok')}/"
                       f"${was.get('output_mtok')} per Mtok, now without a known price")
        elif now["model"] != was.get("model") or any(
            Decimal(now[k]) != _decimal(was.get(k)) for k in ("input_mtok", "output_mtok")
        ):
            out.append(f"tier {name!r}: calibrated at {was.get('model')} ${was.get('input_mtok')}/"
                       f"${was.get('output_mtok')} per Mtok, now {now['model']} ${now['input_mtok']}/"
                       f"${now['output_mtok']}")
    return out


def warn_on_drift(source: str, assumed: Mapping[str, Mapping[str, str]], table: TierTable, book: PriceBook) -> None:
    """Warn (RoutingWarning) when the runtime's prices are not the ones ``source`` was calibrated at."""
    drift = price_drift(assumed, table, book)
    if drift:
        warnings.warn(
            f"{source} was calibrated at other prices than this runtime's ({'; '.join(drift)}): its settings may no "
            "longer be the cheapest that meet its target; run paymaster calibrate again",
            RoutingWarning, stacklevel=3,
        )
