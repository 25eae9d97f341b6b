"""Derived metrics, computed from a record's own raw values, never from platform ratios.

Ratios are exact Decimals when the quotient has at most RATIO_PRECISION significant digits
(50 clicks / 1000 impressions is exactly 0.05); longer or non-terminating quotients are
rounded half-even to RATIO_PRECISION significant digits (1/3 -> 0.33333333333333333333).
A missing or zero denominator gives None, never 0 and never an error.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Any

from tasks.datatypes import DataType

RATIO_PRECISION = 20
RATIO_CONTEXT = Context(
    prec=RATIO_PRECISION, rounding=ROUND_HALF_EVEN,
    traps=[InvalidOperation, DivisionByZero, Overflow],
)

# Deal stages that mean won or lost, compared without case, spaces or punctuation:
# HubSpot's closedwon / closedlost, Salesforce's "Closed Won" / "Closed Lost".
WON_STAGES = frozenset({"closedwon", "won"})
LOST_STAGES = frozenset({"closedlost", "lost"})


def derived_names(data_type: DataType) -> tuple[str, ...]:
    """Every derived column declared: ratios and per-record metric columns."""
    return (*(m.name for m in data_type.metrics), *data_type.metric_columns)


def computed_names(data_type: DataType) -> list[str]:
    """The derived columns this module knows how to compute for `data_type`."""
    return [*(m.name for m in data_type.metrics),
            *(n for n in data_type.metric_columns if n in _RECORD_METRICS)]


def ratio_function(data_type: DataType) -> Callable[[dict[str, Any]], None]:
    """Sets the data type's ratios on a record, in place (the kernel inlines the same sums)."""
    ratios = tuple((m.name, m.numerator, m.denominator, m.scale) for m in data_type.metrics)

    def set_ratios(record: dict[str, Any]) -> None:
        get = record.get
        for name, numerator, denominator, scale in ratios:
            n = get(numerator)
            d = get(denominator)
            if n is None or not d:
                record[name] = None
                continue
            if n.__class__ is int:  # int / int would be a float
                n = Decimal(n)
            # Scale first, so that cpm is spend * 1000 / impressions with one rounding.
            record[name] = (n * scale if scale != 1 else n) / d

    return set_ratios


def _stage_key(stage: Any) -> str:
    return "".join(ch for ch in str(stage).lower() if ch.isalnum())


def deal_won(record: dict[str, Any]) -> bool | None:
    """Won from the CRM's own flag, else from the stage; None when nothing says."""
    is_won = record.get("is_won")
    if is_won is not None:
        return bool(is_won)
    stage = record.get("stage")
    key = _stage_key(stage) if stage is not None else None
    if key in WON_STAGES:
        return True
    if key in LOST_STAGES or record.get("is_closed") is False:
        return False
    if key is not None and record.get("is_closed") is None:
        return False  # an open pipeline stage: not won (yet)
    return None


def days_to_close(record: dict[str, Any]) -> int | None:
    """Whole days from created_at (its UTC date) to close_date; negative if the data says so."""
    created = record.get("created_at")
    closed = record.get("close_date")
    if not isinstance(created, date) or not isinstance(closed, date):
        return None
    if isinstance(created, datetime):
        created = created.date()
    if isinstance(closed, datetime):
        closed = closed.date()
    return (closed - created).days


_RECORD_METRICS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "won": deal_won,
    "days_to_close": days_to_close,
}


def record_metrics_function(data_type: DataType) -> Callable[[dict[str, Any]], None] | None:
    """Sets the per-record metric columns (crm_deals' won, days_to_close); None if none."""
    others = tuple(
        (name, _RECORD_METRICS[name])
        for name in data_type.metric_columns if name in _RECORD_METRICS
    )
    if not others:
        return None

    def set_record_metrics(record: dict[str, Any]) -> None:
        for name, compute in others:
            record[name] = compute(record)

    return set_record_metrics


def metrics_function(data_type: DataType) -> Callable[[dict[str, Any]], None]:
    """Sets every derived column of `data_type` on a record, in place.

    Call it inside `ratio_context()`: the ratios use the current decimal context.
    """
    parts = [f for f in (ratio_function(data_type) if data_type.metrics else None,
                         record_metrics_function(data_type)) if f is not None]

    def set_all(record: dict[str, Any]) -> None:
        for part in parts:
            part(record)

    return parts[0] if len(parts) == 1 else set_all


def ratio_context() -> Any:
    """The decimal context every ratio is computed in (a context manager)."""
    return localcontext(RATIO_CONTEXT)
