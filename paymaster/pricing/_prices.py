"""Per-model prices, resolved once per model and multiplied per call.

Prices come from the genai-prices library; a local override file covers custom
and local models. An unknown price is ``None``, never zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from genai_prices import Usage as _GPUsage
from genai_prices import calc_price
from genai_prices.types import TieredPrices

from .._files import read_toml
from ..errors import ConfigurationError
from ..providers._types import Usage

_MTOK = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Rates:
    """Dollars per million tokens for each kind of token."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal


@dataclass(frozen=True, slots=True)
class ModelPrices:
    """A model's prices: base rates, plus rates that apply once a prompt passes a size."""

    provider: str
    model: str
    base: Rates
    tiers: tuple[tuple[int, Rates], ...] = ()
    source: str = "genai-prices"

    def rates_for(self, input_tokens: int) -> Rates:
        """Rates that apply to a call whose prompt has ``input_tokens`` tokens."""
        rates = self.base
        for start, tier_rates in self.tiers:
            if input_tokens > start:
                rates = tier_rates
        return rates

    def cost(self, usage: Usage) -> Decimal:
        """Exact dollar cost of ``usage``; cached reads and writes at their own rates."""
        r = self.rates_for(usage.input_tokens)
        uncached = max(usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens, 0)
        total = (
            uncached * r.input
            + usage.cache_read_tokens * r.cache_read
            + usage.cache_write_tokens * r.cache_write
            + usage.output_tokens * r.output
        )
        return total / _MTOK

    def worst_case(self, input_tokens: int, output_tokens: int) -> Decimal:
        """Upper bound on the cost of a call with at most these many tokens."""
        r = self.rates_for(input_tokens)
        input_rate = max(r.input, r.cache_write)
        return (input_tokens * input_rate + output_tokens * r.output) / _MTOK


def _rate(value: Decimal | TieredPrices | None, fallback: Decimal) -> Decimal:
    if value is None:
        return fallback
    if isinstance(value, TieredPrices):
        return value.base
    return value


def _tier_rate(value: Decimal | TieredPrices | None, start: int, fallback: Decimal) -> Decimal:
    if isinstance(value, TieredPrices):
        applicable = [t.price for t in value.tiers if t.start <= start]
        return applicable[-1] if applicable else value.base
    return _rate(value, fallback)


def _from_genai_prices(provider: str, model: str) -> ModelPrices | None:
    try:
        calc = calc_price(_GPUsage(input_tokens=0, output_tokens=0), model_ref=model, provider_id=provider)
    except LookupError:
        return None
    mp: Any = calc.model_price
    inp = getattr(mp, "input_mtok", None)
    out = getattr(mp, "output_mtok", None)
    if inp is None or out is None:
        return None
    cr = getattr(mp, "cache_read_mtok", None)
    cw = getattr(mp, "cache_write_mtok", None)
    base_in = _rate(inp, Decimal(0))
    base = Rates(base_in, _rate(out, Decimal(0)), _rate(cr, base_in), _rate(cw, base_in))
    starts = sorted(
        {t.start for v in (inp, out, cr, cw) if isinstance(v, TieredPrices) for t in v.tiers}
    )
    tiers = tuple(
        (
            start,
            Rates(
                _tier_rate(inp, start, Decimal(0)),
                _tier_rate(out, start, Decimal(0)),
                _tier_rate(cr, start, _tier_rate(inp, start, Decimal(0))),
                _tier_rate(cw, start, _tier_rate(inp, start, Decimal(0))),
            ),
        )
        for start in starts
    )
    return ModelPrices(provider=provider, model=model, base=base, tiers=tiers)


def _decimal(value: object, where: str) -> Decimal:
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        msg = f"{where}: {value!r} is not a number; write prices as strings, e.g. \"0.15\""
        raise ConfigurationError(msg) from None
    if not d.is_finite() or d < 0:
        raise ConfigurationError(f"{where}: price must be a finite number >= 0, got {value!r}")
    return d


def parse_price_overrides(table: Mapping[str, Any], where: str = "prices") -> dict[tuple[str, str], ModelPrices]:
    """Parse ``{"provider/model": {"input_mtok": ..., "output_mtok": ...}}`` into prices."""
    out: dict[tuple[str, str], ModelPrices] = {}
    for key, spec in table.items():
        if "/" not in key or not isinstance(spec, Mapping):
            raise ConfigurationError(
                f"{where}: entry {key!r} must be a table named \"provider/model\", "
                'e.g. [prices."local/gemma-3-270m"] with input_mtok and output_mtok'
            )
        provider, model = key.split("/", 1)
        unknown = set(spec) - {"input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok"}
        if unknown:
            raise ConfigurationError(f"{where}.{key}: unknown field(s) {sorted(unknown)}")
        if "input_mtok" not in spec or "output_mtok" not in spec:
            raise ConfigurationError(f"{where}.{key}: both input_mtok and output_mtok are required")
        inp = _decimal(spec["input_mtok"], f"{where}.{key}.input_mtok")
        rates = Rates(
            input=inp,
            output=_decimal(spec["output_mtok"], f"{where}.{key}.output_mtok"),
            cache_read=_decimal(spec.get("cache_read_mtok", inp), f"{where}.{key}.cache_read_mtok"),
            cache_write=_decimal(spec.get("cache_write_mtok", inp), f"{where}.{key}.cache_write_mtok"),
        )
        out[(provider, model)] = ModelPrices(provider, model, rates, source="override")
    return out


class PriceBook:
    """Resolves ``(provider, model)`` to prices: local overrides first, then genai-prices."""

    def __init__(self, overrides: Mapping[tuple[str, str], ModelPrices] | None = None) -> None:
        self._overrides = dict(overrides or {})
        self._resolved: dict[tuple[str, str], ModelPrices | None] = {}

    @classmethod
    def from_file(cls, path: str | Path) -> PriceBook:
        """Load overrides from a TOML file with ``[prices."provider/model"]`` tables."""
        data = read_toml(path, "price file")
        return cls(parse_price_overrides(data.get("prices", {}), where=f"{path}: prices"))

    def set(self, prices: ModelPrices) -> None:
        """Add or replace a model's prices."""
        self._overrides[(prices.provider, prices.model)] = prices
        self._resolved.pop((prices.provider, prices.model), None)

    def get(self, provider: str, model: str) -> ModelPrices | None:
        """Prices for ``model`` at ``provider``, or ``None`` when nobody knows them."""
        key = (provider, model)
        if key in self._overrides:
            return self._overrides[key]
        if key not in self._resolved:
            self._resolved[key] = _from_genai_prices(provider, model)
        return self._resolved[key]
