"""Provider usage and cost exports, read into one shape: (UTC day, model, cost, tokens, requests).

Formats read, as the providers' admin APIs return them (a single page, or a
JSON list of pages):

- OpenAI ``GET /v1/organization/costs``: buckets (``start_time``/``end_time``,
  epoch seconds) of ``organization.costs.result`` with ``amount.value`` in
  dollars and, grouped by ``line_item``, items like ``"gpt-4o-2024-08-06, input"``;
- OpenAI ``GET /v1/organization/usage/completions``: buckets of
  ``organization.usage.completions.result`` with ``input_tokens`` (cached
  included), ``output_tokens``, ``num_model_requests`` and, grouped by model, ``model``;
- Anthropic ``GET /v1/organizations/cost_report``: buckets (``starting_at``/
  ``ending_at``, RFC 3339) of results with ``amount`` in cents as a decimal
  string, ``currency`` and, grouped by description, ``model`` (null for
  non-token costs such as web search, named by ``cost_type``);
- Anthropic ``GET /v1/organizations/usage_report/messages``: buckets of results
  with ``uncached_input_tokens``, ``cache_read_input_tokens``,
  ``cache_creation.ephemeral_5m_input_tokens`` / ``ephemeral_1h_input_tokens``,
  ``output_tokens`` and ``model``;
- a CSV with the columns ``date, model, tokens, cost`` (either of the last two may be blank).

Amounts are read as exact decimals (JSON numbers never pass through a float).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError

ALL_MODELS = "(all models)"  # an export not grouped by model is compared by day


@dataclass(frozen=True)
class BillLine:
    """What a provider's export says about one model on one UTC day (None: the export does not say)."""

    day: dt.date
    model: str | None
    cost: Decimal | None
    tokens: int | None
    requests: int | None = None


@dataclass(frozen=True)
class Bill:
    """Lines of one or more exports, the provider they come from (None: a CSV) and the days they cover."""

    provider: str | None
    lines: list[BillLine]
    first_day: dt.date
    last_day: dt.date  # inclusive

    @property
    def has_cost(self) -> bool:
        """Whether any line carries money (a usage-only export carries tokens only)."""
        return any(line.cost is not None for line in self.lines)


def load_bill(path: Path) -> Bill:
    """Read one export file, recognising its format; a file of no known shape is a ConfigurationError."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from None
    suffix = path.suffix.lower()
    if suffix == ".csv" or (suffix != ".json" and text.lstrip()[:1] not in ("{", "[")):
        return _csv_bill(path, text)
    try:
        data = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"{path} is not valid JSON ({exc}); expected a provider usage or cost export"
        ) from None
    pages = data if isinstance(data, list) else [data]
    buckets = [b for page in pages if isinstance(page, Mapping) for b in page.get("data") or []]
    if not buckets or not all(isinstance(b, Mapping) for b in buckets):
        raise ConfigurationError(f"{path} has no usage buckets: expected the JSON of OpenAI's organization costs or "
                                 "usage API, or of Anthropic's cost or usage report (a page with a 'data' list)")
    if "start_time" in buckets[0]:
        return _from_buckets(path, "openai", buckets, _openai_span, _openai_result)
    if "starting_at" in buckets[0]:
        return _from_buckets(path, "anthropic", buckets, _anthropic_span, _anthropic_result)
    raise ConfigurationError(f"{path}: buckets have neither 'start_time' (OpenAI) nor 'starting_at' (Anthropic)")


def merge(bills: Iterable[Bill]) -> Bill:
    """Several exports (say a cost and a usage export) as one bill; they must come from one provider."""
    bills = list(bills)
    providers = {b.provider for b in bills}
    if len(providers) > 1:
        names = ", ".join(sorted(p or "csv" for p in providers))
        raise ConfigurationError(f"exports from different providers ({names}): reconcile one provider at a time")
    return Bill(providers.pop(), [line for b in bills for line in b.lines], min(b.first_day for b in bills),
                max(b.last_day for b in bills))


def _from_buckets(path: Path, provider: str, buckets: list[Mapping[str, Any]], span: Any, result: Any) -> Bill:
    lines: list[BillLine] = []
    first, last = dt.date.max, dt.date.min
    for bucket in buckets:
        try:
            start, end = span(bucket)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"{path}: a bucket without a readable start/end ({exc!r})") from None
        first, last = min(first, start), max(last, end)
        for item in bucket.get("results") or bucket.get("result") or []:
            try:
                line = result(start, item)
            except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
                raise ConfigurationError(f"{path}: cannot read a {provider} result {dict(item)!r}: {exc!r}") from None
            if line is not None:
                lines.append(line)
    return Bill(provider, lines, first, last)


def _openai_span(bucket: Mapping[str, Any]) -> tuple[dt.date, dt.date]:
    start = dt.datetime.fromtimestamp(int(bucket["start_time"]), dt.UTC).date()
    end = dt.datetime.fromtimestamp(int(bucket["end_time"]) - 1, dt.UTC).date()  # end_time is exclusive
    return start, end


def _openai_result(day: dt.date, r: Mapping[str, Any]) -> BillLine | None:
    kind = str(r.get("object", ""))
    if kind == "organization.costs.result":
        amount = r.get("amount") or {}
        _usd(str(amount.get("currency", "usd")))
        item = r.get("line_item")
        # "gpt-4o-2024-08-06, input": the model before the comma; other items ("web search tool calls") as named.
        model = None if item is None else str(item).split(", ")[0]
        return BillLine(day, model, Decimal(str(amount.get("value", 0))), None)
    if kind.startswith("organization.usage.") and "input_tokens" in r:
        tokens = int(r.get("input_tokens") or 0) + int(r.get("output_tokens") or 0)
        return BillLine(day, r.get("model"), None, tokens, int(r.get("num_model_requests") or 0))
    return None  # other usage (images, audio seconds, storage) has no tokens to compare


def _anthropic_span(bucket: Mapping[str, Any]) -> tuple[dt.date, dt.date]:
    start = _rfc3339(str(bucket["starting_at"]))
    end = _rfc3339(str(bucket["ending_at"])) - dt.timedelta(microseconds=1)  # ending_at is exclusive
    return start.date(), end.date()


def _rfc3339(text: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when.astimezone(dt.UTC) if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _anthropic_result(day: dt.date, r: Mapping[str, Any]) -> BillLine | None:
    if "amount" in r:
        _usd(str(r.get("currency", "USD")))
        # The amount is in cents, as a decimal string: "123.45" is $1.2345.
        cost = Decimal(str(r["amount"])) / 100
        model = r.get("model") or r.get("cost_type") or r.get("description")
        return BillLine(day, model, cost, None)
    if "uncached_input_tokens" in r:
        created = r.get("cache_creation") or {}
        tokens = (int(r.get("uncached_input_tokens") or 0) + int(r.get("cache_read_input_tokens") or 0)
                  + int(created.get("ephemeral_5m_input_tokens") or 0)
                  + int(created.get("ephemeral_1h_input_tokens") or 0) + int(r.get("output_tokens") or 0))
        return BillLine(day, r.get("model"), None, tokens)
    return None


def _usd(currency: str) -> None:
    if currency.lower() != "usd":
        raise ValueError(f"currency {currency!r}: the ledger is in USD, so only USD exports reconcile")


def _csv_bill(path: Path, text: str) -> Bill:
    reader = csv.DictReader(text.splitlines())
    columns = {c.strip().lower(): c for c in reader.fieldnames or []}
    if not {"date", "model"} <= columns.keys() or not ({"tokens", "cost"} & columns.keys()):
        raise ConfigurationError(
            f"{path}: a CSV bill needs the columns date, model and tokens and/or cost; it has {reader.fieldnames}"
        )
    lines = []
    for n, row in enumerate(reader, start=2):
        def cell(name: str, row: Mapping[str, str | None] = row) -> str:
            return (row.get(columns.get(name, ""), "") or "").strip()

        try:
            day = dt.date.fromisoformat(cell("date")[:10])
            cost = Decimal(cell("cost").lstrip("$").replace(",", "")) if cell("cost") else None
            tokens = int(cell("tokens").replace(",", "")) if cell("tokens") else None
        except (ValueError, InvalidOperation):
            raise ConfigurationError(
                f"{path}, line {n}: expected a date like 2026-11-02, a whole number of tokens and a dollar cost; "
                f"got {dict(row)!r}"
            ) from None
        lines.append(BillLine(day, cell("model") or None, cost, tokens))
    if not lines:
        raise ConfigurationError(f"{path} has a header but no rows")
    return Bill(None, lines, min(x.day for x in lines), max(x.day for x in lines))
