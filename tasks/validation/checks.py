"""The checks: each reads whole columns of a Batch and returns the failing records.

Each factory is called once per rule when the rules are compiled and returns a closure;
the closure first asks a cheap whole-column question in C (min, max, set difference,
identity maps) and only walks the records one by one when something does fail.
"""

from __future__ import annotations

import operator
import re
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta
from functools import partial
from itertools import compress, count, repeat
from typing import Any

import orjson

from tasks.datatypes import DATETIME
from tasks.validation.batch import Batch
from tasks.validation.convert import ColumnErrors, convert_column
from tasks.validation.model import Check, Outcome

_not_none = partial(operator.is_not, None)
_EMPTY = Outcome()


def _where(flags: Any) -> list[int]:
    return list(compress(count(), flags))


def _typed(batch: Batch, field: str, kind: str | None) -> tuple[list[Any], ColumnErrors]:
    """A declared field's canonical column; an undeclared one converted to `kind` if given."""
    values = batch.column(field)
    if kind is None or batch.kind(field) is not None:
        return values, []
    converted, errors = convert_column(kind, values)
    return converted, errors


def _outcome(failing: list[int], values: list[Any], errors: ColumnErrors,
             describe: Callable[[Any], str]) -> Outcome:
    """Failures of a value test plus conversion failures, merged in record order."""
    if not errors:
        return Outcome(failing, [values[i] for i in failing])
    merged = sorted([(i, values[i], describe(values[i])) for i in failing] + errors,
                    key=operator.itemgetter(0))
    return Outcome([m[0] for m in merged], [m[1] for m in merged], [m[2] for m in merged])


def not_objects() -> Check:
    def check(batch: Batch) -> Outcome:
        return Outcome(list(batch.not_objects), [batch.raw[i] for i in batch.not_objects])
    return check


def coercion(field: str) -> Check:
    """Values that cannot become the declared column's type (errors found by coerce_batch)."""
    def check(batch: Batch) -> Outcome:
        errors = batch.errors.get(field)
        if not errors:
            return _EMPTY
        return Outcome([e[0] for e in errors], [e[1] for e in errors], [e[2] for e in errors])
    return check


def _nulls(batch: Batch, field: str) -> list[int]:
    """Records whose value is missing, null or blank, but not those whose value was bad."""
    failing = _where(map(operator.is_, batch.column(field), repeat(None)))
    bad = batch.error_indices(field)
    return [i for i in failing if i not in bad] if bad else failing


def required(field: str) -> Check:
    def check(batch: Batch) -> Outcome:
        failing = _nulls(batch, field)
        return Outcome(failing, [batch.raw_value(i, field) for i in failing])
    return check


def not_null(field: str) -> Check:
    def check(batch: Batch) -> Outcome:
        failing = _nulls(batch, field)
        if failing:
            present = batch.present(field)
            failing = [i for i in failing if present[i]]
        return Outcome(failing, [batch.raw_value(i, field) for i in failing])
    return check


def forbidden(field: str) -> Check:
    def check(batch: Batch) -> Outcome:
        if field not in batch.fields_seen and batch.kind(field) is not None:
            return _EMPTY
        bad = batch.error_indices(field)
        values = batch.column(field)
        failing = [i for i, v in enumerate(values) if v is not None or i in bad]
        return Outcome(failing, [batch.raw_value(i, field) for i in failing])
    return check


def type_check(field: str, kind: str) -> Check:
    """Values (canonical, or as they came for undeclared fields) convertible to `kind`."""
    def check(batch: Batch) -> Outcome:
        _, errors = convert_column(kind, batch.column(field))
        return Outcome([e[0] for e in errors], [e[1] for e in errors], [e[2] for e in errors])
    return check


def value_range(field: str, low: Any, high: Any, strict_low: bool, strict_high: bool,
                kind: str | None, describe: Callable[[Any], str]) -> Check:
    too_low = operator.le if strict_low else operator.lt
    too_high = operator.ge if strict_high else operator.gt

    def out_of_range(v: Any) -> bool:
        return (low is not None and too_low(v, low)) or (high is not None and too_high(v, high))

    def check(batch: Batch) -> Outcome:
        values, errors = _typed(batch, field, kind)
        present = list(filter(_not_none, values))
        if not present or (
            (low is None or not too_low(min(present), low))
            and (high is None or not too_high(max(present), high))
        ):
            failing: list[int] = []
        else:
            failing = [i for i, v in enumerate(values) if v is not None and out_of_range(v)]
        return _outcome(failing, values, errors, describe)
    return check


def _member(value: Any, allowed: frozenset[Any]) -> bool:
    try:
        return value in allowed
    except TypeError:  # an unhashable value (list, object) from `extra`
        return False


def allowed_values(field: str, allowed: frozenset[Any]) -> Check:
    def check(batch: Batch) -> Outcome:
        values = batch.column(field)
        try:
            if set(values) <= allowed | {None}:
                return _EMPTY
        except TypeError:
            pass
        failing = [i for i, v in enumerate(values) if v is not None and not _member(v, allowed)]
        return Outcome(failing, [values[i] for i in failing])
    return check


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def regex(field: str, pattern: re.Pattern[str]) -> Check:
    search = pattern.search

    def check(batch: Batch) -> Outcome:
        values = batch.column(field)
        failing = [
            i for i, v in enumerate(values)
            if v is not None and search(v if v.__class__ is str else _as_text(v)) is None
        ]
        return Outcome(failing, [values[i] for i in failing])
    return check


def length(field: str, low: int | None, high: int | None) -> Check:
    low_ = 0 if low is None else low
    high_ = float("inf") if high is None else high

    def check(batch: Batch) -> Outcome:
        values = batch.column(field)
        failing = [
            i for i, v in enumerate(values)
            if v is not None and not low_ <= len(v if v.__class__ is str else _as_text(v)) <= high_
        ]
        return Outcome(failing, [values[i] for i in failing])
    return check


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return value


def unique(fields: list[str]) -> Check:
    """All records sharing a key fail (which one is right cannot be told); a record with a
    null in any key field is not compared."""
    def check(batch: Batch) -> Outcome:
        columns = [batch.column(f) for f in fields]
        keys = columns[0] if len(columns) == 1 else list(zip(*columns, strict=True))
        if len(columns) == 1:
            rows = [i for i, k in enumerate(keys) if k is not None]
        else:
            rows = [i for i, k in enumerate(keys) if None not in k]
        if len(rows) != len(keys):
            keys = [keys[i] for i in rows]
        try:
            counts = Counter(keys)
        except TypeError:
            keys = [tuple(map(_hashable, k)) if len(columns) > 1 else _hashable(k) for k in keys]
            counts = Counter(keys)
        if len(counts) == len(keys):
            return _EMPTY
        failing = [row for row, k in zip(rows, keys, strict=True) if counts[k] > 1]
        return Outcome(failing, [{f: c[i] for f, c in zip(fields, columns, strict=True)}
                                 for i in failing])
    return check


OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "!=": operator.ne,
}


def _to_date(values: list[Any]) -> list[Any]:
    return [v.date() if isinstance(v, datetime) else v for v in values]


def compare(left: str, op: str, right: str, kinds: tuple[str | None, str | None],
            as_dates: bool, describe: Callable[[Any], str]) -> Check:
    """left <op> right on every record where both are present (dates vs datetimes by day).

    An undeclared side is converted to its kind first; a value that does not convert fails.
    """
    test = OPERATORS[op]

    def check(batch: Batch) -> Outcome:
        lefts, left_errors = _typed(batch, left, kinds[0])
        rights, right_errors = _typed(batch, right, kinds[1])
        if as_dates:
            lefts, rights = _to_date(lefts), _to_date(rights)
        failing = [
            i for i, a, b in zip(count(), lefts, rights)
            if a is not None and b is not None and not test(a, b)
        ]
        shown_left, shown_right = batch.column(left), batch.column(right)

        def pair(i: int) -> dict[str, Any]:
            return {left: shown_left[i], right: shown_right[i]}

        errors = {i: f"{right}: {m}" for i, _, m in right_errors}
        errors.update({i: f"{left}: {m}" for i, _, m in left_errors})
        if not errors:
            return Outcome(failing, [pair(i) for i in failing])
        indices = sorted(errors.keys() | set(failing))
        values = [pair(i) for i in indices]
        return Outcome(indices, values, [
            errors[i] if i in errors else describe(v) for i, v in zip(indices, values, strict=True)
        ])
    return check


def row_count(low: int | None, high: int | None) -> Check:
    def check(batch: Batch) -> Outcome:
        n = batch.size
        failed = (low is not None and n < low) or (high is not None and n > high)
        return Outcome(batch_failed=failed, observed=n)
    return check


def freshness(field: str, max_age_days: int | None, allow_future: bool, kind: str) -> Check:
    """Dates (or datetimes) not older than max_age_days before now, and not after now."""
    def check(batch: Batch) -> Outcome:
        values, errors = _typed(batch, field, kind)
        declared = batch.kind(field) or kind
        now: Any = batch.now if declared == DATETIME else batch.now.date()
        oldest = None if max_age_days is None else now - timedelta(days=max_age_days)
        stale = [] if oldest is None else [
            (i, v, f"{field} {_as_text(v)} is older than {max_age_days} days")
            for i, v in enumerate(values) if v is not None and v < oldest
        ]
        future = [] if allow_future else [
            (i, v, f"{field} {_as_text(v)} is in the future")
            for i, v in enumerate(values) if v is not None and v > now
        ]
        merged = sorted(stale + future + errors, key=operator.itemgetter(0))
        return Outcome([m[0] for m in merged], [m[1] for m in merged], [m[2] for m in merged])
    return check

