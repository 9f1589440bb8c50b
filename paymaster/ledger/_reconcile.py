"""The ledger against the provider's own bill, by UTC day and model.

The ledger side is every call that may have been billed: steps with a model,
not refused, not a tool or a cache hit, of the bill's provider. Each (day,
model) of either side gets one row and a status:

- ``match``: cost within the tolerance and, where both sides count tokens, the same tokens;
- ``differs``: both sides have it, but cost or tokens disagree;
- ``not in ledger``: the provider billed spend the ledger does not know;
- ``not billed``: the ledger recorded spend the provider did not bill.

A ledger call closed at its worst case (``unsettled``) over-states on purpose;
such rows say how many of those calls they hold, which explains a ledger
figure above the bill.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from .._money import from_picos, plain_usd
from ._bills import ALL_MODELS, Bill, BillLine
from ._reader import Reader

Status = Literal["match", "differs", "not in ledger", "not billed"]
DEFAULT_TOLERANCE = Decimal("0.01")
_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class LedgerLine:
    """What the ledger recorded for one model on one UTC day."""

    day: dt.date
    model: str
    calls: int
    tokens: int
    cost: Decimal  # known prices only
    unpriced: int
    unsettled: int


@dataclass(frozen=True)
class ReconRow:
    """One (day, model): the ledger's figures, the bill's, and whether they agree."""

    day: dt.date
    model: str
    status: Status
    ledger_cost: Decimal | None
    bill_cost: Decimal | None
    ledger_tokens: int | None
    bill_tokens: int | None
    note: str = ""

    @property
    def difference(self) -> Decimal | None:
        """Ledger cost minus billed cost (None when either side has no cost)."""
        if self.ledger_cost is None or self.bill_cost is None:
            return None
        return self.ledger_cost - self.bill_cost


@dataclass(frozen=True)
class Reconciliation:
    """Every row, the period and provider compared, and the totals."""

    provider: str | None
    first_day: dt.date
    last_day: dt.date
    tolerance: Decimal
    rows: list[ReconRow]

    @property
    def differences(self) -> list[ReconRow]:
        """The rows that do not match."""
        return [r for r in self.rows if r.status != "match"]

    @property
    def ledger_total(self) -> Decimal:
        """The ledger's cost over the period (known prices)."""
        return sum((r.ledger_cost or Decimal(0) for r in self.rows), Decimal(0))

    @property
    def bill_total(self) -> Decimal:
        """The bill's cost over the period."""
        return sum((r.bill_cost or Decimal(0) for r in self.rows), Decimal(0))


def ledger_lines(reader: Reader, first: dt.date, last: dt.date, provider: str | None) -> list[LedgerLine]:
    """The ledger's billable calls from ``first`` to ``last`` (UTC days, inclusive) by day and model."""
    start = dt.datetime.combine(first, dt.time(), dt.UTC).timestamp()
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), dt.UTC).timestamp()
    params: dict[str, Any] = {"start": start, "end": end}
    only = ""
    if provider is not None:
        only, params["provider"] = " AND steps.provider = :provider", provider
    day = reader.utc_day("steps.created_at")
    rows = reader.rows(
        f"SELECT {day}, steps.model, COUNT(*), COALESCE(SUM(steps.input_tokens + steps.output_tokens), 0), "
        "COALESCE(SUM(steps.cost_picos), 0), SUM(CASE WHEN steps.cost_picos IS NULL THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN steps.status = 'unsettled' THEN 1 ELSE 0 END) FROM steps "
        "WHERE steps.created_at >= :start AND steps.created_at < :end AND steps.model IS NOT NULL "
        f"AND steps.status <> 'refused' AND steps.kind NOT IN ('tool', 'cache_hit'){only} GROUP BY 1, 2",
        params,
    )
    return [LedgerLine(_EPOCH + dt.timedelta(days=int(d)), str(m), int(n), int(t), from_picos(int(c)), int(u),
                       int(s)) for d, m, n, t, c, u, s in rows]


def reconcile(
    reader: Reader, bill: Bill, *, provider: str | None = None, tolerance: Decimal = DEFAULT_TOLERANCE
) -> Reconciliation:
    """Compare the ledger with a bill over the bill's days; ``provider`` defaults to the bill's own."""
    provider = provider if provider is not None else bill.provider
    ours = ledger_lines(reader, bill.first_day, bill.last_day, provider)
    by_day_only = {line.day for line in bill.lines if line.model is None}
    theirs: dict[tuple[dt.date, str], list[BillLine]] = {}
    for b in bill.lines:
        key = (b.day, ALL_MODELS if b.day in by_day_only else str(b.model))
        theirs.setdefault(key, []).append(b)
    mine: dict[tuple[dt.date, str], list[LedgerLine]] = {}
    for m in ours:
        key = (m.day, ALL_MODELS if m.day in by_day_only else m.model)
        mine.setdefault(key, []).append(m)
    rows = [_compare(day, model, mine.get((day, model), []), theirs.get((day, model), []), bill.has_cost, tolerance)
            for day, model in sorted(mine.keys() | theirs.keys())]
    return Reconciliation(provider, bill.first_day, bill.last_day, tolerance, [r for r in rows if r is not None])


def _compare(
    day: dt.date, model: str, mine: list[LedgerLine], theirs: list[BillLine], bill_has_cost: bool, tolerance: Decimal
) -> ReconRow | None:
    costs = [b.cost for b in theirs if b.cost is not None]
    counts = [b.tokens for b in theirs if b.tokens is not None]
    bill_cost = sum(costs, Decimal(0)) if costs else None
    bill_tokens = sum(counts) if counts else None
    ledger_cost = sum((m.cost for m in mine), Decimal(0)) if mine else None
    ledger_tokens = sum(m.tokens for m in mine) if mine else None
    notes = []
    unpriced, unsettled = sum(m.unpriced for m in mine), sum(m.unsettled for m in mine)
    if unpriced:
        notes.append(f"{unpriced} ledger calls of unknown price")
    if unsettled:
        notes.append(f"{unsettled} ledger calls charged at worst case (unsettled)")
    if not mine:
        if not (bill_cost or bill_tokens):
            return None  # a zero line on the bill is nothing to reconcile
        status: Status = "not in ledger"
    elif not theirs:
        if not ledger_cost and not (ledger_tokens and not bill_has_cost):
            return None  # free calls (scripted, zero-priced) have nothing to bill
        status = "not billed"
    else:
        cost_ok = bill_cost is None or ledger_cost is None or abs(ledger_cost - bill_cost) <= tolerance
        tokens_ok = bill_tokens is None or ledger_tokens == bill_tokens
        status = "match" if cost_ok and tokens_ok else "differs"
        if not tokens_ok:
            notes.append("tokens differ")
    return ReconRow(day, model, status, ledger_cost, bill_cost, ledger_tokens, bill_tokens, "; ".join(notes))


RECON_COLUMNS = ("day", "model", "status", "ledger_usd", "bill_usd", "difference_usd", "ledger_tokens",
                 "bill_tokens", "note")


def recon_dict(r: ReconRow) -> dict[str, Any]:
    """One row as flat, exact data (the CSV columns)."""
    diff = r.difference
    return {
        "day": r.day.isoformat(), "model": r.model, "status": r.status,
        "ledger_usd": None if r.ledger_cost is None else plain_usd(r.ledger_cost),
        "bill_usd": None if r.bill_cost is None else plain_usd(r.bill_cost),
        "difference_usd": None if diff is None else plain_usd(diff),
        "ledger_tokens": r.ledger_tokens, "bill_tokens": r.bill_tokens, "note": r.note,
    }


def reconciliation_dict(rec: Reconciliation) -> dict[str, Any]:
    """The whole comparison as JSON-ready data."""
    return {
        "provider": rec.provider, "first_day": rec.first_day.isoformat(), "last_day": rec.last_day.isoformat(),
        "tolerance_usd": plain_usd(rec.tolerance), "ledger_total_usd": plain_usd(rec.ledger_total),
        "bill_total_usd": plain_usd(rec.bill_total), "differences": len(rec.differences),
        "rows": [recon_dict(r) for r in rec.rows],
    }
