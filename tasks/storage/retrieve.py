"""Retrieval: filtered, sorted, paginated reads of a data type's table.

Filter and sort fields are checked against the declaration; values are bound
parameters, converted to the column's type first, so a bad value is a clear error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from tasks.coerce import CONVERTERS, CoercionError
from tasks.datatypes import JSON, DataType
from tasks.storage.schema import DATA_TABLES

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in")


class RetrievalError(ValueError):
    """A query the declaration does not allow; `details` says which part and what is allowed."""

    def __init__(self, message: str, details: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.details = dict(details)


def queryable_columns(data_type: DataType) -> dict[str, str]:
    columns = {"id": "integer", **data_type.all_columns}
    return {name: kind for name, kind in columns.items() if kind != JSON}


def _convert(field: str, kind: str, value: Any) -> Any:
    try:
        converted = CONVERTERS[kind](value)
    except CoercionError as exc:
        raise RetrievalError(
            f"filter {field!r}: {exc}", {"field": field, "value": value}
        ) from None
    if converted is None and value is not None:
        raise RetrievalError(f"filter {field!r}: empty value", {"field": field, "value": value})
    return converted


def _condition(column: Any, field: str, kind: str, spec: Any) -> ColumnElement[bool]:
    if spec is None:
        return column.is_(None)
    if isinstance(spec, list):
        return column.in_([_convert(field, kind, v) for v in spec])
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - set(OPERATORS))
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
                parts.append(column.in_([_convert(field, kind, v) for v in value]))
                continue
            if value is None and op in ("eq", "ne"):
                parts.append(column.is_(None) if op == "eq" else column.is_not(None))
                continue
            bound = _convert(field, kind, value)
            parts.append({
                "eq": column == bound, "ne": column != bound, "gt": column > bound,
                "gte": column >= bound, "lt": column < bound, "lte": column <= bound,
            }[op])
        return and_(*parts)
    return column == _convert(field, kind, spec)


def _unknown_field(kind: str, field: Any, allowed: Sequence[str]) -> RetrievalError:
    return RetrievalError(
        f"unknown {kind} field {field!r}", {"field": field, "allowed": sorted(allowed)}
    )


def build_conditions(
    data_type: DataType, filters: Mapping[str, Any]
) -> list[ColumnElement[bool]]:
    table = DATA_TABLES[data_type.name]
    columns = queryable_columns(data_type)
    conditions = []
    for field, spec in filters.items():
        if field == "date_range":
            conditions.extend(_date_range(data_type, spec))
            continue
        if field not in columns:
            raise _unknown_field("filter", field, [*columns, "date_range"])
        conditions.append(_condition(table.c[field], field, columns[field], spec))
    return conditions


def _date_range(data_type: DataType, spec: Any) -> list[ColumnElement[bool]]:
    if data_type.date_column is None:
        raise RetrievalError(
            f"{data_type.name} has no date column for date_range", {"field": "date_range"})
    if not isinstance(spec, Mapping) or not set(spec) <= {"start", "end"}:
        raise RetrievalError(
            "date_range takes {\"start\": \"YYYY-MM-DD\", \"end\": \"YYYY-MM-DD\"}",
            {"field": "date_range"},
        )
    column = DATA_TABLES[data_type.name].c[data_type.date_column]
    kind = data_type.all_columns[data_type.date_column]
    out = []
    if spec.get("start") is not None:
        out.append(column >= _convert("date_range.start", kind, spec["start"]))
    if spec.get("end") is not None:
        out.append(column <= _convert("date_range.end", kind, spec["end"]))
    return out


def _order_by(data_type: DataType, sort: Sequence[str]) -> list[Any]:
    table = DATA_TABLES[data_type.name]
    columns = queryable_columns(data_type)
    order = []
    for item in sort:
        name = item[1:] if isinstance(item, str) and item.startswith("-") else item
        if name not in columns:
            raise _unknown_field("sort", item, columns)
        order.append(table.c[name].desc() if item.startswith("-") else table.c[name].asc())
    order.append(table.c.id.asc())  # a total order, so pages never overlap
    return order


def retrieve(
    conn: Connection,
    data_type: DataType,
    *,
    filters: Mapping[str, Any] | None = None,
    sort: Sequence[str] = (),
    fields: Sequence[str] | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
) -> dict[str, Any]:
    if not 1 <= limit <= MAX_LIMIT:
        raise RetrievalError(
            f"limit must be between 1 and {MAX_LIMIT}", {"field": "limit", "maximum": MAX_LIMIT})
    if offset < 0:
        raise RetrievalError("offset must not be negative", {"field": "offset"})
    table = DATA_TABLES[data_type.name]
    all_columns = ["id", *data_type.all_columns]
    if fields:
        unknown = [f for f in fields if f not in all_columns]
        if unknown:
            raise _unknown_field("projection", unknown[0], all_columns)
        selected = [table.c[f] for f in fields]
    else:
        selected = [table.c[f] for f in all_columns]
    conditions = build_conditions(data_type, filters or {})
    order = _order_by(data_type, sort)

    rows = conn.execute(
        select(*selected).where(*conditions).order_by(*order).limit(limit).offset(offset)
    ).mappings().all()
    total = conn.execute(
        select(func.count()).select_from(table).where(*conditions)
    ).scalar_one()
    next_offset = offset + len(rows) if offset + len(rows) < total else None
    return {
        "records": [dict(r) for r in rows],
        "records_count": len(rows),
        "total_count": total,
        "limit": limit,
        "offset": offset,
        "next_offset": next_offset,
    }
