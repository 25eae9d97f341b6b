"""PostgreSQL's text and jsonb cannot hold U+0000 (NUL). Where a batch enters the pipeline
(its raw chunks, tasks/chunks.py) every NUL is replaced by U+FFFD, and counted, so that a
stray zero byte in an export neither fails the store nor keeps the record out of the
quarantine."""

from __future__ import annotations

from typing import Any

NUL, NUL_REPLACEMENT = "\x00", "\ufffd"


def without_nul(value: Any) -> tuple[Any, int]:
    """`value` with every NUL in its strings, keys included, replaced; and how many."""
    if isinstance(value, str):
        found = value.count(NUL)
        return (value.replace(NUL, NUL_REPLACEMENT), found) if found else (value, 0)
    if isinstance(value, list):
        total = 0
        items = []
        for item in value:
            item, found = without_nul(item)
            items.append(item)
            total += found
        return items, total
    if isinstance(value, dict):
        total = 0
        pairs = {}
        for key, item in value.items():
            key, in_key = without_nul(key)
            item, in_item = without_nul(item)
            pairs[key] = item
            total += in_key + in_item
        return pairs, total
    return value, 0


def find_nul(value: Any, path: str) -> str | None:
    """Where in `value` (a path like `rules[0].values[1]`) a string or key holds a NUL."""
    if isinstance(value, str):
        return path if NUL in value else None
    if isinstance(value, list):
        for index, item in enumerate(value):
            if (found := find_nul(item, f"{path}[{index}]")) is not None:
                return found
    elif isinstance(value, dict):
        for key, item in value.items():
            if NUL in key:
                return f"{path}.{key!r}"
            if (found := find_nul(item, f"{path}.{key}")) is not None:
                return found
    return None
