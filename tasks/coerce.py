"""Turning incoming values into the canonical Python types of a data type's columns.

Platforms send numbers as strings, dates in several forms and ids as numbers; one set of
converters handles all of it so that every stage agrees. Money is Decimal end to end:
a float is converted through its shortest repr, so 100.1 stays 100.1, not 100.0999...
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from tasks.datatypes import (
    BOOLEAN,
    DATE,
    DATETIME,
    DECIMAL,
    EXTRA_COLUMN,
    INTEGER,
    JSON,
    TEXT,
    DataType,
)


class CoercionError(ValueError):
    """A value that cannot become the column's type; the message says what was expected."""


class OutOfRange(CoercionError):
    """A number of the right kind, too big or too small to be stored."""


# Past these a number is a mistake, not a marketing figure, and it would overflow the
# stages' decimal arithmetic, PostgreSQL's bigint and numeric columns or the JSON encoder.
DECIMAL_EXPONENT_LIMIT = 100  # a number's leading digit lies between 1e-100 and 1e100
INTEGER_MIN, INTEGER_MAX = -(2**63), 2**63 - 1


def in_decimal_range(number: Decimal) -> bool:
    """A finite Decimal whose leading digit is within DECIMAL_EXPONENT_LIMIT (for a zero:
    its exponent, as 0E-999999 would not fit a numeric column)."""
    return -DECIMAL_EXPONENT_LIMIT <= number.adjusted() <= DECIMAL_EXPONENT_LIMIT


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _decimal_in_range(number: Decimal, value: Any) -> Decimal:
    if not number.is_finite():
        raise CoercionError("expected a finite number")
    if not in_decimal_range(number):
        limit = DECIMAL_EXPONENT_LIMIT
        raise OutOfRange(f"number out of range: {_shown(value)} (between 1e-{limit} and "
                         f"1e{limit} in magnitude)")
    return number


def to_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, bool):
        raise CoercionError("expected text, got a boolean")
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    raise CoercionError(f"expected text, got {type(value).__name__}")


def to_decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise CoercionError("expected a number, got a boolean")
    if isinstance(value, Decimal):
        return _decimal_in_range(value, value)
    if isinstance(value, int):
        return _decimal_in_range(Decimal(value), value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CoercionError("expected a finite number")
        return _decimal_in_range(Decimal(repr(value)), value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise CoercionError(f"expected a number, got {_shown(value)}") from None
        return _decimal_in_range(number, value)
    raise CoercionError(f"expected a number, got {type(value).__name__}")


def to_integer(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise CoercionError("expected an integer, got a boolean")
    if isinstance(value, int):
        integer = value
    else:
        number = to_decimal(value)
        if number is None:
            return None
        # Integer metrics can arrive as "15.0" (GA4) or 15.0; a fraction is an error, not
        # a rounding.
        if number != number.to_integral_value():
            raise CoercionError(f"expected an integer, got {_shown(value)}")
        integer = int(number)
    if not INTEGER_MIN <= integer <= INTEGER_MAX:
        raise OutOfRange(f"integer out of range: {_shown(value)} (at most 64 bits)")
    return integer


def to_date(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise CoercionError(f"expected a date, got {type(value).__name__}")
    text = value.strip()
    if not text:
        return None
    try:
        if len(text) == 8 and text.isdigit():  # GA4's YYYYMMDD
            return date(int(text[:4]), int(text[4:6]), int(text[6:]))
        if len(text) == 10:
            return date.fromisoformat(text)
        return _parse_datetime(text).date()
    except ValueError:
        raise CoercionError(f"expected a date (YYYY-MM-DD), got {value!r}") from None


def _parse_datetime(text: str) -> datetime:
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _from_epoch_millis(value: float) -> datetime:
    """Epoch milliseconds, as CRMs often send them; out-of-range values are errors."""
    try:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise CoercionError(f"expected a datetime, got an epoch value out of range: {value!r}")\
            from None


def to_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _from_epoch_millis(value)
    if not isinstance(value, str):
        raise CoercionError(f"expected a datetime, got {type(value).__name__}")
    text = value.strip()
    if not text:
        return None
    if text.isdigit() and len(text) >= 12:
        return _from_epoch_millis(int(text))
    try:
        return _parse_datetime(text)
    except ValueError:
        raise CoercionError(f"expected an ISO 8601 datetime, got {value!r}") from None


_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


def to_boolean(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if not text:
            return None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise CoercionError(f"expected a boolean, got {value!r}")


def to_json(value: Any) -> Any:
    return value


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    TEXT: to_text,
    INTEGER: to_integer,
    DECIMAL: to_decimal,
    DATE: to_date,
    DATETIME: to_datetime,
    BOOLEAN: to_boolean,
    JSON: to_json,
}

FieldError = tuple[str, Any, str]


def coerce_record(
    record: Mapping[str, Any], data_type: DataType, columns: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], list[FieldError]]:
    """Canonical values for the declared columns; unknown fields go to `extra`.

    A value that cannot be converted is kept as it came and reported as
    (field, value, message), so validation can quarantine the record with that reason.
    """
    columns = columns if columns is not None else data_type.all_columns
    out: dict[str, Any] = {}
    errors: list[FieldError] = []
    extra: dict[str, Any] | None = None
    for name, value in record.items():
        kind = columns.get(name)
        if kind is None:
            if extra is None:
                extra = {}
            extra[name] = value
            continue
        if name == EXTRA_COLUMN:
            if isinstance(value, Mapping):
                extra = {**value, **(extra or {})}
            elif value is not None:
                errors.append((name, value, "expected an object"))
            continue
        try:
            out[name] = CONVERTERS[kind](value)
        except CoercionError as exc:
            out[name] = value
            errors.append((name, value, str(exc)))
    if extra:
        out[EXTRA_COLUMN] = extra
    return out, errors


def json_default(value: Any) -> Any:
    """orjson fallback: Decimal travels as its exact string."""
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
