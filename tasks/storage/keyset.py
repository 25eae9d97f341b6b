"""Sort orders and keyset ("seek") pagination over them.

A sort is a list of declared columns, a leading minus meaning descending, always closed
by `id` ascending so the order is total. NULLs sort as PostgreSQL does by default (last
ascending, first descending), i.e. as if larger than any value, which is what lets a
btree index serve the order in both directions.

The page after a cursor is the rows strictly after the cursor's key values. Besides the
exact predicate, the leading column gets a range bound an index can start from, so the
cost of a page does not grow with its depth. An ascending nullable leading column would
need "c >= v OR c IS NULL", which no index range serves; it is read in two phases
instead: the non-NULL rows from v on, then (if the page is not full) the NULL tail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, false, or_
from sqlalchemy.sql.elements import ColumnElement

from tasks.datatypes import TEXT
from tasks.storage.filters import RetrievalError, convert, unknown_field

TIEBREAK = "id"
NOT_NULL = frozenset({TIEBREAK})


@dataclass(frozen=True)
class SortKey:
    name: str
    kind: str
    descending: bool

    @property
    def nullable(self) -> bool:
        return self.name not in NOT_NULL

    @property
    def spec(self) -> str:
        return f"-{self.name}" if self.descending else self.name


def parse_sort(
    sort: Sequence[str], allowed: Mapping[str, str], tiebreak: Sequence[str] = (TIEBREAK,)
) -> list[SortKey]:
    """Sort keys for `sort` (names checked against `allowed`), closed by the tiebreak."""
    keys: list[SortKey] = []
    seen: set[str] = set()
    for item in sort:
        if not isinstance(item, str):
            raise unknown_field("sort", item, allowed)
        name = item[1:] if item.startswith("-") else item
        if name not in allowed:
            raise unknown_field("sort", item, allowed)
        if name in seen:
            raise RetrievalError(f"sort field {name!r} given twice", {"field": "sort"})
        seen.add(name)
        keys.append(SortKey(name, allowed[name], item.startswith("-")))
    keys += [SortKey(name, allowed[name], False) for name in tiebreak if name not in seen]
    return keys


def order_by(columns: Mapping[str, Any], keys: Sequence[SortKey]) -> list[Any]:
    return [columns[k.name].desc() if k.descending else columns[k.name].asc() for k in keys]


def _eq(column: Any, value: Any) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value


def _after(column: Any, key: SortKey, value: Any, nullable: bool) -> ColumnElement[bool] | None:
    """Rows whose value of this one key comes after `value` (NULL counts as the largest)."""
    if key.descending:
        if value is None:
            return column.is_not(None)
        return column < value
    if value is None:
        return None  # nothing is larger than NULL
    return or_(column > value, column.is_(None)) if nullable else column > value


def _predicate(columns: Mapping[str, Any], keys: Sequence[SortKey], values: Sequence[Any],
               leading_nullable: bool) -> ColumnElement[bool]:
    terms = []
    for i, key in enumerate(keys):
        nullable = key.nullable and (i > 0 or leading_nullable)
        after = _after(columns[key.name], key, values[i], nullable)
        if after is not None:
            terms.append(and_(*(_eq(columns[k.name], values[j])
                                for j, k in enumerate(keys[:i])), after))
    return or_(*terms) if terms else false()


def seek_phases(
    columns: Mapping[str, Any], keys: Sequence[SortKey], values: Sequence[Any]
) -> list[list[ColumnElement[bool]]]:
    """Conditions of the rows after `values`, as phases read in order until a page is full."""
    first, value = keys[0], values[0]
    column = columns[first.name]
    if first.descending:
        bound = [column <= value] if value is not None else []
        return [[*bound, _predicate(columns, keys, values, True)]]
    if value is None:
        return [[column.is_(None), _predicate(columns, keys, values, True)]]
    head = [column >= value, _predicate(columns, keys, values, False)]
    if not first.nullable:
        return [head]
    return [head, [column.is_(None)]]


def dump_value(value: Any) -> Any:
    """A key value as JSON for a cursor."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def load_values(keys: Sequence[SortKey], raw: Any) -> list[Any]:
    """Key values of a cursor back as the columns' Python types."""
    if not isinstance(raw, list) or len(raw) != len(keys):
        raise RetrievalError("cursor does not match this sort", {"field": "cursor"})
    values = []
    for key, value in zip(keys, raw, strict=True):
        if value is None or key.kind == TEXT:
            if value is not None and not isinstance(value, str):
                raise RetrievalError("malformed cursor", {"field": "cursor"})
            values.append(value)
        else:
            values.append(convert("cursor", key.kind, value))
    return values
