"""Retrieval: filtered, sorted, projected and paginated (or aggregated) reads of a table.

Every name in a request (filter, sort, field, group_by, metric) is checked against the
data type's declaration and becomes a SQLAlchemy column object; every value is converted
to the column's type and bound. Nothing from a request is ever SQL text.

Pages: `limit` + `offset`, or `cursor` (keyset: the cost of a page does not depend on its
depth; see keyset.py). Every page that has more rows after it answers a `next_cursor`.
`total_count` is "exact" (default), "estimate" (the planner's row estimate: free, and
good enough for "about 12 million") or "none". An exact count is skipped when the page
itself proves the total (a last page), and cursor pages reuse the count taken on the
first page, which the signed cursor carries.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, func, literal_column, select
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import CTE

from tasks.datatypes import INTEGER, DataType
from tasks.storage import aggregate, cursor
from tasks.storage.filters import (
    RetrievalError,
    build_conditions,
    queryable_columns,
    unknown_field,
)
from tasks.storage.keyset import SortKey, dump_value, load_values, order_by, parse_sort, seek_phases
from tasks.storage.schema import DATA_TABLES

__all__ = [
    "COUNT_MODES", "DEFAULT_LIMIT", "MAX_LIMIT", "MAX_OFFSET", "RetrievalError", "build_query",
    "read_only", "retrieve", "stream",
]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_OFFSET = 1_000_000_000
COUNT_MODES = ("exact", "estimate", "none")
# A retrieve statement running longer than this is cancelled (HTTP 503, query_timeout).
STATEMENT_TIMEOUT_MS = 30_000
STREAM_BATCH = 2000
CURSOR_VERSION = 1
_TOTAL = "__total"


@dataclass(frozen=True)
class Query:
    """A checked request: what to select, where, in which order; no database needed."""

    data_type: DataType
    table: Table
    outputs: dict[str, Any]  # output name -> SQL expression
    conditions: list[ColumnElement[bool]]
    groups: CTE | None  # the aggregated rows, when group_by / metrics were asked
    keys: list[SortKey]
    key_columns: Mapping[str, Any]
    digest: str

    @property
    def names(self) -> list[str]:
        return list(self.outputs)


def _key_label(i: int) -> str:
    return f"__k{i}"


def build_query(
    data_type: DataType,
    *,
    filters: Mapping[str, Any] | None = None,
    sort: Sequence[str] = (),
    fields: Sequence[str] | None = None,
    group_by: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
) -> Query:
    table = DATA_TABLES[data_type.name]
    filters = filters or {}
    conditions = build_conditions(data_type, filters)
    if group_by or metrics:
        if fields:
            raise RetrievalError("fields cannot be combined with group_by/metrics: the "
                                 "records are the groups", {"field": "fields"})
        agg = aggregate.build(data_type, table, group_by or [], metrics or [])
        keys = parse_sort(sort, agg.kinds, tiebreak=agg.group_by)
        grouped = select(*agg.outputs.values()).select_from(table).where(*conditions)
        if agg.group_by:
            grouped = grouped.group_by(*(table.c[g] for g in agg.group_by))
        # A CTE of its own: the groups are all computed anyway (they are counted), and
        # planned apart from the LIMIT the planner picks the cheapest full aggregation
        # (hash, parallel) instead of betting on an index scan in group order.
        groups = grouped.cte("groups").prefix_with("MATERIALIZED")
        outputs = {name: groups.c[name] for name in agg.outputs}
        key_columns = outputs
    else:
        groups = None
        columns = {"id": INTEGER, **data_type.all_columns}
        chosen = list(fields) if fields else list(columns)
        for name in chosen:
            if name not in columns:
                raise unknown_field("projection", name, list(columns))
        if len(set(chosen)) != len(chosen):
            raise RetrievalError("a field is listed twice in fields", {"field": "fields"})
        keys = parse_sort(sort, queryable_columns(data_type))
        outputs = {name: table.c[name] for name in chosen}
        key_columns = table.c
    digest = cursor.query_digest({
        "data_type": data_type.name, "filters": filters, "sort": [k.spec for k in keys]})
    return Query(data_type, table, outputs, conditions, groups, keys, key_columns, digest)


def _select(query: Query, extra: Sequence[ColumnElement[bool]] = ()) -> Select[Any]:
    order = order_by(query.key_columns, query.keys)
    if query.groups is not None:
        # Counting the groups in the same pass: they are all materialised for the sort.
        return select(*query.outputs.values(), func.count().over().label(_TOTAL)) \
            .select_from(query.groups).order_by(*order)
    keys = [query.key_columns[k.name].label(_key_label(i)) for i, k in enumerate(query.keys)]
    return (select(*query.outputs.values(), *keys).select_from(query.table)
            .where(*query.conditions, *extra).order_by(*order))


def _check_page(limit: int | None, offset: int, cursor_token: str | None,
                maximum: int | None) -> None:
    if limit is not None and not 1 <= limit <= (maximum or limit):
        raise RetrievalError(f"limit must be between 1 and {maximum or 'any'}",
                             {"field": "limit", "maximum": maximum})
    if not 0 <= offset <= MAX_OFFSET:
        raise RetrievalError(f"offset must be between 0 and {MAX_OFFSET}",
                             {"field": "offset", "maximum": MAX_OFFSET})
    if cursor_token is not None and offset:
        raise RetrievalError("give either offset or cursor, not both", {"field": "cursor"})


def _open_cursor(key: bytes, token: str, query: Query) -> dict[str, Any]:
    if query.groups is not None:
        raise RetrievalError("cursor pages records; page groups with offset",
                             {"field": "cursor"})
    try:
        payload = cursor.decode(key, token)
    except cursor.CursorError as exc:
        raise RetrievalError(f"invalid cursor: {exc}", {"field": "cursor"}) from None
    if payload.get("v") != CURSOR_VERSION or payload.get("q") != query.digest:
        raise RetrievalError("cursor belongs to another query (data type, filters and sort "
                             "must stay the same across pages)", {"field": "cursor"})
    return payload


def _seek(query: Query, key_source: Engine, token: str | None,
          key: bytes | None) -> tuple[list[list[ColumnElement[bool]]], dict[str, Any]]:
    if token is None:
        return [[]], {}
    payload = _open_cursor(key or cursor.signing_key(key_source), token, query)
    values = load_values(query.keys, payload.get("k"))
    return seek_phases(query.key_columns, query.keys, values), payload


def _fetch(conn: Connection, query: Query, phases: list[list[ColumnElement[bool]]],
           limit: int, offset: int) -> list[RowMapping]:
    rows: list[RowMapping] = []
    for conditions in phases:
        need = limit - len(rows)
        if need <= 0:
            break
        stmt = _select(query, conditions).limit(need).offset(offset)
        rows += conn.execute(stmt).mappings().all()
    return rows


def _estimate(conn: Connection, query: Query) -> int:
    """The planner's row estimate for the filters: no rows are read."""
    stmt = select(literal_column("1")).select_from(query.table).where(*query.conditions)
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    plan = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", compiled.params).scalar()
    return int(plan[0]["Plan"]["Plan Rows"])


def _exact(conn: Connection, query: Query) -> int:
    if query.groups is None:
        stmt = select(func.count()).select_from(query.table).where(*query.conditions)
    else:
        stmt = select(func.count()).select_from(query.groups)
    return int(conn.execute(stmt).scalar_one())


def _total(conn: Connection, query: Query, mode: str, rows: list[RowMapping], *,
           has_more: bool, offset: int, paged_by_cursor: bool, carried: Any) -> int | None:
    if mode == "none":
        return None
    if query.groups is not None:  # counted by the window in the same statement
        if rows:
            return int(rows[0][_TOTAL])
        return 0 if offset == 0 else _exact(conn, query)
    if not has_more and not paged_by_cursor and (rows or offset == 0):
        return offset + len(rows)  # the last page: the total is known without counting
    if paged_by_cursor and isinstance(carried, int):
        return carried  # counted on the first page
    if mode == "estimate":
        return _estimate(conn, query)
    return _exact(conn, query)


def retrieve(
    conn: Connection,
    data_type: DataType,
    *,
    filters: Mapping[str, Any] | None = None,
    sort: Sequence[str] = (),
    fields: Sequence[str] | None = None,
    limit: int | None = DEFAULT_LIMIT,
    offset: int = 0,
    cursor_token: str | None = None,
    group_by: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    total_count: str = "exact",
    cursor_key: bytes | None = None,
) -> dict[str, Any]:
    """One page: records (or groups), counts and where the next page starts."""
    limit = DEFAULT_LIMIT if limit is None else limit
    _check_page(limit, offset, cursor_token, MAX_LIMIT)
    if total_count not in COUNT_MODES:
        raise RetrievalError(f"total_count must be one of {', '.join(COUNT_MODES)}",
                             {"field": "total_count", "allowed": list(COUNT_MODES)})
    query = build_query(data_type, filters=filters, sort=sort, fields=fields,
                        group_by=group_by, metrics=metrics)
    phases, payload = _seek(query, conn.engine, cursor_token, cursor_key)
    rows = _fetch(conn, query, phases, limit + 1, offset)
    has_more = len(rows) > limit
    rows = rows[:limit]
    total = _total(conn, query, total_count, rows, has_more=has_more, offset=offset,
                   paged_by_cursor=cursor_token is not None, carried=payload.get("t"))
    next_cursor = None
    if has_more and query.groups is None:
        last = rows[-1]
        next_cursor = cursor.encode(cursor_key or cursor.signing_key(conn.engine), {
            "v": CURSOR_VERSION, "q": query.digest,
            "k": [dump_value(last[_key_label(i)]) for i in range(len(query.keys))],
            "t": total if total_count == "exact" else None,
        })
    names = query.names
    return {
        "records": [{name: row[name] for name in names} for row in rows],
        "records_count": len(rows),
        "total_count": total,
        "limit": limit,
        "offset": offset,
        "next_offset": offset + len(rows) if has_more and cursor_token is None else None,
        "next_cursor": next_cursor,
    }


def stream(
    conn: Connection,
    data_type: DataType,
    *,
    filters: Mapping[str, Any] | None = None,
    sort: Sequence[str] = (),
    fields: Sequence[str] | None = None,
    limit: int | None = None,
    offset: int = 0,
    cursor_token: str | None = None,
    group_by: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    cursor_key: bytes | None = None,
) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """Column names, and every matching row (or `limit` of them) read in batches.

    The request is checked before this returns; the rows are read while iterating, on a
    server-side cursor, so memory stays flat however many there are.
    """
    _check_page(limit, offset, cursor_token, None)
    query = build_query(data_type, filters=filters, sort=sort, fields=fields,
                        group_by=group_by, metrics=metrics)
    phases, _ = _seek(query, conn.engine, cursor_token, cursor_key)
    names = query.names

    def rows() -> Iterator[dict[str, Any]]:
        remaining = limit
        for conditions in phases:
            if remaining is not None and remaining <= 0:
                return
            stmt = _select(query, conditions).offset(offset or None)
            if remaining is not None:
                stmt = stmt.limit(remaining)
            result = conn.execution_options(stream_results=True, yield_per=STREAM_BATCH) \
                .execute(stmt).mappings()
            for row in result:
                if remaining is not None:
                    remaining -= 1
                yield {name: row[name] for name in names}

    return names, rows()


@contextmanager
def read_only(engine: Engine) -> Iterator[Connection]:
    """A connection in a read-only transaction with a statement time limit.

    Read-only is defence in depth: whatever a request contained, it cannot write.
    """
    with engine.connect() as conn:
        # The first statement of the transaction; both settings in one round trip.
        conn.exec_driver_sql("SET TRANSACTION READ ONLY; "
                             f"SET LOCAL statement_timeout = {int(STATEMENT_TIMEOUT_MS)}")
        yield conn
