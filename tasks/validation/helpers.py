"""Per-value helpers for the rarer tests the generated loop does not write inline: values
that need converting first (undeclared fields live in `extra` as they came), explicit
type tests and freshness. Each returns None when the value passes, else
(value to report, message)."""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from tasks import jsontext
from tasks.coerce import CONVERTERS, CoercionError
from tasks.datatypes import DATETIME

Helper = Callable[..., tuple[Any, str] | None]

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "!=": operator.ne,
}


def as_text(value: Any) -> str:
    """How regex and length read a value that is not a string."""
    if isinstance(value, str):
        return value
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return jsontext.dumps(value).decode()
    return str(value)


def convertible(field: str, kind: str) -> Helper:
    convert = CONVERTERS[kind]

    def check(value: Any) -> tuple[Any, str] | None:
        try:
            convert(value)
        except CoercionError as exc:
            return value, f"{field}: {exc}"
        return None
    return check


def converted(field: str, kind: str, test: Callable[[Any], bool],
              describe: Callable[[Any], str]) -> Helper:
    """Convert an undeclared field's value to `kind`, then test it."""
    convert = CONVERTERS[kind]

    def check(value: Any) -> tuple[Any, str] | None:
        try:
            canonical = convert(value)
        except CoercionError as exc:
            return value, f"{field}: {exc}"
        if canonical is None or test(canonical):
            return None
        return value, describe(value)
    return check


def member(allowed: frozenset[Any], describe: Callable[[Any], str]) -> Helper:
    def check(value: Any) -> tuple[Any, str] | None:
        try:
            if value in allowed:
                return None
        except TypeError:  # an unhashable value (list, object)
            pass
        return value, describe(value)
    return check


def compare(left: str, op: str, right: str, kinds: tuple[str | None, str | None],
            as_dates: bool, describe: Callable[[Any], str]) -> Helper:
    """left <op> right where a side needs converting (undeclared) or dates meet datetimes."""
    test = OPERATORS[op]
    converters = [None if k is None else CONVERTERS[k] for k in kinds]

    def check(a: Any, b: Any) -> tuple[Any, str] | None:
        pair = {left: a, right: b}
        values = []
        for name, value, convert in ((left, a, converters[0]), (right, b, converters[1])):
            if convert is not None:
                try:
                    value = convert(value)
                except CoercionError as exc:
                    return pair, f"{name}: {exc}"
            if as_dates and isinstance(value, datetime):
                value = value.date()
            values.append(value)
        if values[0] is None or values[1] is None or test(values[0], values[1]):
            return None
        return pair, describe(pair)
    return check


def freshness(field: str, max_age_days: int | None, allow_future: bool, kind: str,
              declared: bool, now: datetime) -> Helper:
    """Not older than max_age_days before now, and not after now (dates by day)."""
    convert = None if declared else CONVERTERS[kind]
    latest: Any = now if kind == DATETIME else now.date()
    oldest = None if max_age_days is None else latest - timedelta(days=max_age_days)

    def check(value: Any) -> tuple[Any, str] | None:
        canonical = value
        if convert is not None:
            try:
                canonical = convert(value)
            except CoercionError as exc:
                return value, f"{field}: {exc}"
            if canonical is None:
                return None
        if oldest is not None and canonical < oldest:
            return value, f"{field} {as_text(canonical)} is older than {max_age_days} days"
        if not allow_future and canonical > latest:
            return value, f"{field} {as_text(canonical)} is in the future"
        return None
    return check

