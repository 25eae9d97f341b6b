"""Currency conversion of a batch's money fields with rates stored as the `fx_rates` data type.

The rate that applies is the latest one on or before the record's date (a record without a
date takes the latest stored). A stored `from -> target` rate multiplies; failing that, a
stored `target -> from` rate of a later date (or the only one) is inverted, rounded half-even
to RATIO_PRECISION significant digits. Products are exact. The values the record came
with are kept as original_currency and original_<money field>.

A record that needs a rate and has none is never converted with a wrong number: it is
quarantined (rule fx_rate_missing, or currency_missing when it has no currency), or with
on_missing_rate "keep" stays in its own currency with `extra.fx_rate_missing` set to the
target it could not reach. Records without money values are left as they are.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Context, Decimal
from typing import Any

from tasks.datatypes import DataType
from tasks.processing.lookups import Lookups, Pair, RateSeries
from tasks.processing.metrics import RATIO_CONTEXT
from tasks.processing.options import QUARANTINE
from tasks.processing.placement import extra_of, place

# Wide enough that a money value times a rate is exact (digits add up under multiplication).
MONEY_CONTEXT = Context(prec=60)
ORIGINAL_CURRENCY = "original_currency"
MISSING_FLAG = "fx_rate_missing"

Reason = dict[str, Any]
# (input index, record, its money fields, its currency code, its date)
Pending = tuple[int, dict[str, Any], list[str], str, date | None]


def original_name(money_field: str) -> str:
    return f"original_{money_field}"


class RateBook:
    """Rates per (from, to) pair, looked up by date."""

    def __init__(self, series: Mapping[Pair, RateSeries]) -> None:
        self._dates = {pair: [day for day, _ in rows] for pair, rows in series.items()}
        self._rates = {pair: [rate for _, rate in rows] for pair, rows in series.items()}

    def _latest(self, pair: Pair, on: date | None) -> tuple[date, Decimal] | None:
        dates = self._dates.get(pair)
        if not dates:
            return None
        i = len(dates) if on is None else bisect_right(dates, on)
        return (dates[i - 1], self._rates[pair][i - 1]) if i else None

    def multiplier(self, source: str, target: str, on: date | None) -> Decimal | None:
        """What one unit of `source` is worth in `target` on `on`; None without a rate."""
        direct = self._latest((source, target), on)
        inverse = self._latest((target, source), on)
        if direct is not None and (inverse is None or direct[0] >= inverse[0]):
            return direct[1]
        if inverse is not None:
            return RATIO_CONTEXT.divide(Decimal(1), inverse[1])
        return None


@dataclass
class Conversion:
    """What a batch's conversion did; `refused` holds (input index, record, reasons) to
    quarantine, the record as type normalisation made it."""

    records: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # in batch order
    refused: list[tuple[int, dict[str, Any], list[Reason]]] = field(default_factory=list)
    converted: int = 0
    unchanged: int = 0
    rate_missing: int = 0
    currency_missing: int = 0

    def counts(self, target: str) -> dict[str, Any]:
        return {
            "target_currency": target,
            "currency_unchanged": self.unchanged,
            "fx_rate_missing": self.rate_missing,
            "currency_missing": self.currency_missing,
        }


def _keep_originals(record: dict[str, Any], data_type: DataType, money: list[str]) -> None:
    place(record, data_type, ORIGINAL_CURRENCY, record.get("currency"))
    for name in money:
        place(record, data_type, original_name(name), record[name])


def _date_range(days: list[date | None]) -> tuple[date | None, date | None]:
    """(since, until) for the rates query: an undated record needs the latest rate of all."""
    dated = [d for d in days if d is not None]
    if len(dated) < len(days):
        return (min(dated) if dated else date.max), None
    return min(dated), max(dated)


def convert_currency(
    items: list[tuple[int, dict[str, Any]]],
    data_type: DataType,
    target: str,
    lookups: Lookups,
    on_missing: str = QUARANTINE,
) -> Conversion:
    """Convert the money fields of `items` ((index, record) pairs) to `target`, in place."""
    result = Conversion()
    pending: list[Pending] = []
    date_column = data_type.date_column
    for index, record in items:
        money = [name for name in data_type.money_fields if record.get(name) is not None]
        currency = record.get("currency")
        if not money:
            result.unchanged += 1
        elif currency is None:
            result.currency_missing += 1
            _missing(result, index, record, on_missing, target, {
                "rule": "currency_missing", "field": "currency", "value": None,
                "message": f"no currency: cannot convert {', '.join(money)} to {target}",
            })
        elif currency.upper() == target:
            _keep_originals(record, data_type, money)
            record["currency"] = target
            result.unchanged += 1
        else:
            day = record.get(date_column) if date_column else None
            pending.append((index, record, money, currency.upper(), day))
    if pending:
        _convert_pending(result, pending, data_type, target, lookups, on_missing)
    refused = {index for index, _, _ in result.refused}
    result.records = [item for item in items if item[0] not in refused] if refused else items
    return result


def _convert_pending(
    result: Conversion,
    pending: list[Pending],
    data_type: DataType,
    target: str,
    lookups: Lookups,
    on_missing: str,
) -> None:
    pairs = {pair for *_, code, _ in pending for pair in ((code, target), (target, code))}
    book = RateBook(lookups.fx_rates(pairs, *_date_range([p[4] for p in pending])))
    multipliers: dict[tuple[str, date | None], Decimal | None] = {}
    for index, record, money, code, day in pending:
        key = (code, day)
        if key not in multipliers:
            multipliers[key] = book.multiplier(code, target, day)
        rate = multipliers[key]
        if rate is None:
            result.rate_missing += 1
            when = f"on or before {day.isoformat()}" if day is not None else "stored"
            _missing(result, index, record, on_missing, target, {
                "rule": "fx_rate_missing", "field": "currency", "value": record["currency"],
                "message": f"no {code}->{target} rate {when}",
            })
            continue
        _keep_originals(record, data_type, money)
        for name in money:
            record[name] = MONEY_CONTEXT.multiply(record[name], rate)
        record["currency"] = target
        result.converted += 1


def _missing(result: Conversion, index: int, record: dict[str, Any], on_missing: str,
             target: str, reason: Reason) -> None:
    if on_missing == QUARANTINE:
        result.refused.append((index, record, [reason]))
    else:
        extra_of(record)[MISSING_FLAG] = target
