"""Column-at-a-time coercion with the exact results of tasks.coerce, only faster.

Converting one value per function call costs more than the checks themselves, so a whole
column is converted at once, by the cheapest of three ways that gives coerce_record's
values and error messages:
  - a column of few distinct values (dates, currencies, counts) converts each distinct
    value once with the reference converter of tasks.coerce, then maps the column in C;
  - otherwise one comprehension handles the usual shapes (strings, ints and floats as
    orjson gives them), and any value it does not handle sends the column to
  - a loop that tries the same fast conversion per value and asks the reference
    converter whenever that fails, so odd values get exactly its value or message.
tests/unit/test_validation_convert.py checks the equality over many values.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import partial
from operator import is_not
from typing import Any

from tasks.coerce import CONVERTERS, CoercionError
from tasks.datatypes import DATE, DECIMAL, INTEGER, TEXT

NoneType = type(None)

# (index, value as it came, message) for every value that could not be converted.
ColumnErrors = list[tuple[int, Any, str]]
Converted = tuple[list[Any], ColumnErrors]

_not_none = partial(is_not, None)

# Distinct-value tables pay off when a sample of the column repeats itself this much.
_SAMPLE = 512
_DISTINCT_SHARE = 4
# Exactly equal values of these types always convert alike (unlike 1 == 1.0 == True,
# or Decimal("1") == Decimal("1.0")), so one conversion per distinct value is exact.
_TABLE_TYPES = frozenset({str, int, NoneType})


class _Fallback(Exception):
    """A value the fast path does not handle: convert it with the reference."""


def _fallback() -> Any:
    raise _Fallback


def _fallback_one(value: Any) -> Any:
    raise _Fallback


def _text_bulk(values: list[Any]) -> list[Any]:
    # str.strip returns the same object when there is nothing to strip: no copy, no write.
    return [
        (v.strip() or None) if v.__class__ is str
        else None if v is None
        else str(v) if v.__class__ is int
        else _fallback()
        for v in values
    ]


def _integer_bulk(values: list[Any]) -> list[Any]:
    # int("12") equals the reference's int(Decimal("12")); "12.0" and floats take the
    # reference path, which knows about integral decimals and huge floats.
    return [
        v if v.__class__ is int or v is None else int(v) if v.__class__ is str else _fallback()
        for v in values
    ]


def _decimal_bulk(values: list[Any]) -> list[Any]:
    out = [
        Decimal(v) if v.__class__ is str
        else Decimal(repr(v)) if v.__class__ is float
        else v if v.__class__ is Decimal or v is None
        else Decimal(v) if v.__class__ is int
        else _fallback()
        for v in values
    ]
    # NaN and Infinity parse but are refused by the reference: let it word the error.
    if not all(map(Decimal.is_finite, filter(_not_none, out))):
        raise _Fallback
    return out


def _date_bulk(values: list[Any]) -> list[Any]:
    # Only the plain YYYY-MM-DD form (no spaces can hide in 10 accepted characters).
    return [
        v if v is None or v.__class__ is date
        else date.fromisoformat(v) if v.__class__ is str and len(v) == 10
        else _fallback()
        for v in values
    ]


def _text_one(v: Any) -> Any:
    if v.__class__ is str:
        return v.strip() or None
    raise _Fallback


def _integer_one(v: Any) -> Any:
    if v.__class__ is int:
        return v
    if v.__class__ is str:
        return int(v)
    raise _Fallback


def _decimal_one(v: Any) -> Any:
    cls = v.__class__
    if cls is str:
        d = Decimal(v)
    elif cls is float:
        d = Decimal(repr(v))
    elif cls is int:
        return Decimal(v)
    else:
        raise _Fallback
    if not d.is_finite():
        raise _Fallback
    return d


def _date_one(v: Any) -> Any:
    if v.__class__ is str and len(v) == 10:
        return date.fromisoformat(v)
    raise _Fallback


# The same fast paths for one value at a time (kept beside the bulk ones they mirror).
_ONE: dict[str, Callable[[Any], Any]] = {
    TEXT: _text_one,
    INTEGER: _integer_one,
    DECIMAL: _decimal_one,
    DATE: _date_one,
}

_BULK: dict[str, Callable[[list[Any]], list[Any]]] = {
    TEXT: _text_bulk,
    INTEGER: _integer_bulk,
    DECIMAL: _decimal_bulk,
    DATE: _date_bulk,
}

# Types whose values the reference returns unchanged (same object) for each kind.
_IDENTITY: dict[str, frozenset[type]] = {
    INTEGER: frozenset({int, NoneType}),
    DATE: frozenset({date, NoneType}),
}
_FALLBACK_ERRORS = (_Fallback, InvalidOperation, ValueError, TypeError, OverflowError)


def _by_value(kind: str, values: list[Any]) -> Converted:
    """Value by value: the fast path of the kind where it works, else the reference."""
    fast = _ONE.get(kind, _fallback_one)
    convert = CONVERTERS[kind]
    out: list[Any] = []
    errors: ColumnErrors = []
    append = out.append
    for index, value in enumerate(values):
        try:
            append(fast(value))
            continue
        except _FALLBACK_ERRORS:
            pass
        try:
            append(convert(value))
        except CoercionError as exc:
            append(None)
            errors.append((index, value, str(exc)))
    return out, errors


def _by_table(kind: str, values: list[Any], distinct: set[Any]) -> Converted:
    """Each distinct value converted once by the reference, then the column mapped in C."""
    convert = CONVERTERS[kind]
    table: dict[Any, Any] = {}
    failed: dict[Any, str] = {}
    for value in distinct:
        try:
            table[value] = convert(value)
        except CoercionError as exc:
            table[value] = None
            failed[value] = str(exc)
    out = list(map(table.__getitem__, values))
    errors: ColumnErrors = []
    if failed:
        errors = [(i, v, failed[v]) for i, v in enumerate(values) if v in failed]
    return out, errors


def convert_column(kind: str, values: list[Any]) -> Converted:
    """Canonical values of one column and its errors; an unconvertible value becomes None.

    The result list may be `values` itself when nothing needs converting.
    """
    types = set(map(type, values))
    identity = _IDENTITY.get(kind)
    if identity is not None and types <= identity:
        return values, []
    if types <= _TABLE_TYPES and len(set(values[:_SAMPLE])) * _DISTINCT_SHARE <= min(
        len(values), _SAMPLE
    ):
        distinct = set(values)
        if len(distinct) * _DISTINCT_SHARE <= len(values):
            return _by_table(kind, values, distinct)
    bulk = _BULK.get(kind)
    if bulk is not None:
        try:
            return bulk(values), []
        except _FALLBACK_ERRORS:
            pass
    return _by_value(kind, values)
