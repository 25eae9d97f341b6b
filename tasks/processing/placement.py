"""Where a computed value goes: its declared column, or the record's `extra` until there is one."""

from __future__ import annotations

from typing import Any

from tasks.datatypes import EXTRA_COLUMN, DataType


def extra_of(record: dict[str, Any]) -> dict[str, Any]:
    """The record's own `extra` dict (coercion always makes it a fresh dict), created if missing."""
    extra = record.get(EXTRA_COLUMN)
    if extra is None:
        extra = record[EXTRA_COLUMN] = {}
    return extra


def place(record: dict[str, Any], data_type: DataType, name: str, value: Any) -> None:
    """Set `name` as a column when `data_type` declares it, else as a key of `extra`."""
    if name in data_type.all_columns:
        record[name] = value
    else:
        extra_of(record)[name] = value
