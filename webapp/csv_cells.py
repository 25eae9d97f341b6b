"""Stored values as CSV cells: one writer for the API's CSV export and the CLI's."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from webapp.jsonio import dumps

# A spreadsheet runs a cell starting with one of these as a formula: prefix it with '.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A stored value as a CSV cell, safe to open in a spreadsheet."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict | list):
        return dumps(value).decode()
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
