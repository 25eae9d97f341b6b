"""Retrieval filters: request values checked against the declaration, then bound.

A filter names a declared column and gives a value (equality), a list (IN), or an object
of operators (`{"spend": {"gte": 10, "lt": 100}}`). Values are converted to the column's
type first, so a wrong type is a clear 422 and never reaches SQL text; columns are the
table's SQLAlchemy column objects, looked up by declared name only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, and_
from sqlalchemy.sql.elements import ColumnElement

from tasks.coerce import CONVERTERS, CoercionError
from tasks.datatypes import INTEGER, JSON, TEXT, DataType
from tasks.storage.schema import DATA_TABLES

OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in")
MAX_IN_VALUES = 10_000


class RetrievalError(ValueError):
    """A query the declaration does not allow; `details` says which part and what is allowed."""

    def __init__(self, message: str, details: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.details = dict(details)


def queryable_columns(data_type: DataType) -> dict[str, str]:
    """Columns a request may filter, sort, project or group on, with their kinds."""
    columns = {"id": INTEGER, **data_type.all_columns}
    return {name: kind for name, kind in columns.items() if kind != JSON}


def unknown_field(part: str, field: Any, allowed: Sequence[str]) -> RetrievalError:
    return RetrievalError(
        f"unknown {part} field {field!r}", {"field": field, "allowed": sorted(allowed)}
    )


def convert(field: str, kind: str, value: Any) -> Any:
    """`value` as the column's Python type, or a RetrievalError saying why not (a number
    no column can hold is one: coerce.OutOfRange)."""
    try:
        converted = CONVERTERS[kind](value)
    except CoercionError as exc:
        raise RetrievalError(
            f"filter {field!r}: {exc}", {"field": field, "value": value}
        ) from None
    except (ValueError, OverflowError, OSError):  # e.g. an epoch far outside the calendar
        raise RetrievalError(f"filter {field!r}: value out of range",
                             {"field": field, "value": value}) from None
    if converted is None and value is not None:
        raise RetrievalError(f"filter {field!r}: empty value", {"field": field, "value": value})
    if kind == TEXT and converted is not None and "\x00" in converted:
        raise RetrievalError(f"filter {field!r}: text with a NUL character",
                             {"field": field})
    return converted


def _values(field: str, kind: str, values: list[Any]) -> list[Any]:
    if len(values) > MAX_IN_VALUES:
        raise RetrievalError(f"filter {field!r}: at most {MAX_IN_VALUES} values in a list",
                             {"field": field, "maximum": MAX_IN_VALUES})
    return [convert(field, kind, v) for v in values]


def _condition(column: Any, field: str, kind: str, spec: Any) -> ColumnElement[bool]:
    if spec is None:
        return column.is_(None)
    if isinstance(spec, list):
        return column.in_(_values(field, kind, spec))
    if isinstance(spec, Mapping):
        unknown = sorted(str(op) for op in set(spec) - set(OPERATORS))
        if unknown or not spec:
            raise RetrievalError(
                f"filter {field!r}: unknown operator {', '.join(unknown) or '(none)'}",
                {"field": field, "allowed_operators": list(OPERATORS)},
            )
        parts = []
        for op, value in spec.items():
            if op == "in":
                if not isinstance(value, list):
                    raise RetrievalError(
                        f"filter {field!r}: 'in' takes a list", {"field": field})
                parts.append(column.in_(_values(field, kind, value)))
                continue
            if value is None:
                if op not in ("eq", "ne"):
                    raise RetrievalError(f"filter {field!r}: {op!r} takes a value, not null",
                                         {"field": field, "operator": op})
                parts.append(column.is_(None) if op == "eq" else column.is_not(None))
                continue
            bound = convert(field, kind, value)
            parts.append({
                "eq": column == bound, "ne": column != bound, "gt": column > bound,
                "gte": column >= bound, "lt": column < bound, "lte": column <= bound,
            }[op])
        return and_(*parts)
    return column == convert(field, kind, spec)


def _date_range(data_type: DataType, table: Table, spec: Any) -> list[ColumnElement[bool]]:
    if data_type.date_column is None:
        raise RetrievalError(
            f"{data_type.name} has no date column for date_range", {"field": "date_range"})
    if not isinstance(spec, Mapping) or not set(spec) <= {"start", "end"}:
        raise RetrievalError(
            "date_range takes {\"start\": \"YYYY-MM-DD\", \"end\": \"YYYY-MM-DD\"}",
            {"field": "date_range"},
        )
    column = table.c[data_type.date_column]
    kind = data_type.all_columns[data_type.date_column]
    out = []
    if spec.get("start") is not None:
        out.append(column >= convert("date_range.start", kind, spec["start"]))
    if spec.get("end") is not None:
        out.append(column <= convert("date_range.end", kind, spec["end"]))
    return out


def build_conditions(
    data_type: DataType, filters: Mapping[str, Any]
) -> list[ColumnElement[bool]]:
    """WHERE conditions for `filters`; unknown fields and bad values raise RetrievalError."""
    table = DATA_TABLES[data_type.name]
    columns = queryable_columns(data_type)
    conditions = []
    for field, spec in filters.items():
        if field == "date_range":
            conditions.extend(_date_range(data_type, table, spec))
            continue
        if field not in columns:
            raise unknown_field("filter", field, [*columns, "date_range"])
        conditions.append(_condition(table.c[field], field, columns[field], spec))
    return conditions
