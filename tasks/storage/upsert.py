"""Bulk upsert: rows into a temporary table, then one INSERT .. SELECT .. ON CONFLICT.

Rows reach the staging table by COPY from the worker (`upsert`), or, for our process
stage's output, straight from the claim check, read by PostgreSQL (`upsert_stored`). A
small chunk of that output which the worker holds as text is merged from the text
itself, without the staging table.

The temporary (staging) table is kept by the connection and emptied by every commit
(ON COMMIT DELETE ROWS): creating and dropping one per transaction cost more than the
whole upsert of a few records. Its name carries a digest of its columns, so a connection
that outlives a migration stages into a table of the new shape.

Every identifier comes from a data type declaration and is quoted by psycopg2.sql;
values travel through COPY or the stored chunk, never through SQL text. Monthly
partitions the batch needs are created before the merge (tasks/storage/partitions.py).

Inserted and updated rows are told apart by the statement's own timestamp: a new row
gets it as both ingested_at and updated_at, an updated row keeps its older ingested_at.
(`xmax = 0`, the usual trick, cannot be read from a partitioned table's RETURNING.)
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg2 import sql
from sqlalchemy.engine import Connection

from tasks import jsontext
from tasks.coerce import to_date
from tasks.datatypes import (
    BOOLEAN,
    DATE,
    DATETIME,
    DECIMAL,
    INTEGER,
    JSON,
    LINEAGE_COLUMNS,
    TEXT,
    DataType,
)
from tasks.storage import db
from tasks.storage.partitions import ensure_partitions
from tasks.storage.schema import is_partitioned, payloads_table

PG_TYPES = {
    TEXT: "text", INTEGER: "bigint", DECIMAL: "numeric", DATE: "date",
    DATETIME: "timestamptz", BOOLEAN: "boolean", JSON: "jsonb",
}


def _copy_rows(records: Sequence[dict[str, Any]], columns: Sequence[str],
               json_columns: Sequence[int]) -> io.StringIO:
    """The batch as COPY csv text. csv writes None as an empty unquoted field (NULL) and
    other values with str(): right for text, numbers, Decimal, date, datetime and bool
    (PostgreSQL reads True/False); only JSON values need encoding."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for seq, record in enumerate(records):
        get = record.get
        row = [seq, *[get(c) for c in columns]]
        for i in json_columns:
            value = row[i]
            if value is not None:
                row[i] = jsontext.dumps(value).decode()
        writer.writerow(row)
    buffer.seek(0)
    return buffer


def _staging_name(data_type: DataType, columns: Sequence[str]) -> str:
    shape = ",".join(f"{c}:{data_type.all_columns[c]}" for c in columns)
    digest = hashlib.sha1(f"{data_type.table_name}|{shape}".encode()).hexdigest()[:12]
    return f"_upsert_{data_type.table_name[:40]}_{digest}"


@dataclass(frozen=True)
class _Statements:
    """A data type's upsert statements as SQL text, composed once per declaration: for
    a store of a few records, composing them on every call cost more than running them."""

    columns: tuple[str, ...]
    json_columns: tuple[int, ...]  # positions in a COPY row (after _seq) of JSON columns
    staging: str
    create_staging: str
    truncate_staging: str
    copy: str
    # Stages a stored chunk; returns the rows staged, the months they fall in and the
    # table's partitions (NULLs for a table without dates or partitions).
    stage_stored: str
    stage_given: str  # the same of a chunk's text given as a parameter
    merge_updating: str  # update_existing True
    merge_keeping: str  # update_existing False
    # The same for staged rows known to hold one row per key (see upsert_stored).
    merge_unique_updating: str
    merge_unique_keeping: str
    # The same for a chunk's text given as the parameter `body`, merged without staging.
    merge_given_updating: str
    merge_given_keeping: str


def _compose(data_type: DataType, context: Any) -> _Statements:
    """Every identifier comes from the declaration, quoted by psycopg2.sql."""
    columns = _stored_columns(data_type)
    kinds = data_type.all_columns
    staging = _staging_name(data_type, columns)
    temp = sql.Identifier(staging)
    col_list = sql.SQL(", ").join(sql.Identifier(c) for c in columns)

    def text(statement: sql.Composable) -> str:
        return statement.as_string(context)

    return _Statements(
        columns=tuple(columns),
        json_columns=tuple(i + 1 for i, c in enumerate(columns) if kinds[c] == JSON),
        staging=staging,
        create_staging=text(sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} (_seq bigint, {}) ON COMMIT DELETE ROWS"
        ).format(temp, sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(PG_TYPES[kinds[c]]))
            for c in columns))),
        truncate_staging=text(sql.SQL("TRUNCATE {}").format(temp)),
        copy=text(sql.SQL("COPY {} (_seq, {}) FROM STDIN WITH (FORMAT csv)").format(
            temp, col_list)),
        stage_stored=text(_stage_stored_statement(data_type, columns, temp, given=False)),
        stage_given=text(_stage_stored_statement(data_type, columns, temp, given=True)),
        merge_updating=text(_merge_statement(data_type, columns, temp, True)),
        merge_keeping=text(_merge_statement(data_type, columns, temp, False)),
        merge_unique_updating=text(_merge_statement(data_type, columns, temp, True,
                                                    unique_keys=True)),
        merge_unique_keeping=text(_merge_statement(data_type, columns, temp, False,
                                                   unique_keys=True)),
        merge_given_updating=text(_merge_statement(data_type, columns, temp, True,
                                                   unique_keys=True, given=True)),
        merge_given_keeping=text(_merge_statement(data_type, columns, temp, False,
                                                  unique_keys=True, given=True)),
    )


_composed: dict[str, tuple[DataType, _Statements]] = {}


def _statements(data_type: DataType, context: Any) -> _Statements:
    cached = _composed.get(data_type.name)
    if cached is not None and cached[0] is data_type:  # the very declaration they came from
        return cached[1]
    statements = _compose(data_type, context)
    _composed[data_type.name] = (data_type, statements)
    return statements


def _stage_stored_statement(data_type: DataType, columns: Sequence[str],
                            temp: sql.Identifier, *, given: bool) -> sql.Composed:
    """INSERT .. SELECT of a stored chunk into the staging table, with what the store asks
    next (the months of the rows, the table's partitions) in the same round trip.
    `given`: the chunk's text comes as the parameter `body` instead."""
    date = sql.Identifier(data_type.date_column) if data_type.date_column else None
    if date is not None:
        months = sql.SQL(
            "array_agg(DISTINCT date_trunc('month', {date}::timestamp)::date)"
            " FILTER (WHERE {date} IS NOT NULL)").format(date=date)
    else:
        months = sql.SQL("NULL::date[]")
    if is_partitioned(data_type):
        partitions = sql.SQL(
            "ARRAY(SELECT c.relname::text FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = {}::regclass)"
        ).format(sql.Literal(data_type.table_name))
    else:
        partitions = sql.SQL("NULL::text[]")
    # json_populate_recordset maps each object's keys to the staging table's columns by
    # name (a key with no column is ignored, a column with no key is NULL).
    source = (
        " FROM json_populate_recordset(NULL::{temp}, %(body)s::json) WITH ORDINALITY r"
        if given else
        " FROM {payloads} p,"
        " json_populate_recordset(NULL::{temp}, p.{body}::json) WITH ORDINALITY r"
        " WHERE p.{job} = %(job_id)s AND p.{name} = %(payload)s AND p.{seq} = %(seq)s")
    return sql.SQL(
        "WITH staged AS ("
        " INSERT INTO {temp} (_seq, {cols})"
        " SELECT r.ordinality, {typed}"
        + source +
        " RETURNING {returned})"
        " SELECT count(*), {months}, {partitions} FROM staged"
    ).format(
        temp=temp, cols=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        typed=sql.SQL(", ").join(sql.Identifier("r", c) for c in columns),
        payloads=sql.Identifier(payloads_table.name),
        body=sql.Identifier(payloads_table.c.body.name),
        job=sql.Identifier(payloads_table.c.job_id.name),
        name=sql.Identifier(payloads_table.c.name.name),
        seq=sql.Identifier(payloads_table.c.seq.name),
        returned=date if date is not None else sql.SQL("1"),
        months=months, partitions=partitions,
    )


def _staging_was_used(conn: Connection, name: str) -> bool:
    """True when this transaction already staged rows in `name` (which must then be
    emptied first); a new transaction finds every staging table empty."""
    transaction = conn.get_transaction()
    used = conn.info.get("upsert_staging_used")
    if used is None or used[0] is not transaction or transaction is None:
        conn.info["upsert_staging_used"] = (transaction, {name})
        return transaction is None  # not knowing, empty it
    if name in used[1]:
        return True
    used[1].add(name)
    return False


def _staging(conn: Connection, statements: _Statements) -> str:
    """SQL that makes the connection's staging table for these columns ready and empty
    (created on first use), to send ahead of the statement that fills it."""
    # One staging table, reused: a store of many chunks would otherwise hold the locks of
    # a table per chunk until it commits (and run out of the server's lock table on a
    # file of millions of records).
    ready = f"{statements.create_staging}; "
    if _staging_was_used(conn, statements.staging):
        ready += f"{statements.truncate_staging}; "
    return ready


def _merge_statement(data_type: DataType, columns: Sequence[str], temp: sql.Identifier,
                     update_existing: bool, *, unique_keys: bool = False,
                     given: bool = False) -> sql.Composed:
    """The staged rows into the table, last of each key (by _seq) winning; counts.

    `unique_keys`: the staged rows are known to hold one row per key, so neither the
    pick of the last of each key nor the count of distinct keys is needed.
    `given` (with `unique_keys`): the rows are read from the parameter `body`, a chunk's
    JSON text, rather than from the staging table."""
    target = sql.Identifier(data_type.table_name)
    col_ids = [sql.Identifier(c) for c in columns]
    key_ids = [sql.Identifier(c) for c in data_type.natural_key]
    keys = sql.SQL(", ").join(key_ids)
    if update_existing:
        updatable = [c for c in columns if c not in data_type.natural_key]
        conflict = sql.SQL(
            "DO UPDATE SET {} WHERE {target}.accepted_at IS NULL"
            " OR ({target}.accepted_at, {target}.job_id)"
            " <= (EXCLUDED.accepted_at, EXCLUDED.job_id)"
        ).format(sql.SQL(", ").join(
            sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
            for c in [*updatable, "job_id", "accepted_at", "updated_at"]
        ), target=target)
    else:
        conflict = sql.SQL("DO NOTHING")
    # Rows are written in key order either way: two stores of overlapping keys then lock
    # them in the same order and cannot deadlock.
    if unique_keys:  # as many keys as rows staged, which the caller knows
        pick = sql.SQL("SELECT")
        order = sql.SQL(" ORDER BY {keys}").format(keys=keys)
        distinct = sql.Placeholder("staged")
    else:
        pick = sql.SQL("SELECT DISTINCT ON ({keys})").format(keys=keys)
        order = sql.SQL(" ORDER BY {keys}, _seq DESC").format(keys=keys)
        distinct = sql.SQL("(SELECT count(*) FROM (SELECT DISTINCT {keys} FROM {temp}) k)"
                           ).format(keys=keys, temp=temp)
    # The table's own row type names the columns json_populate_recordset reads.
    rows = (sql.SQL("json_populate_recordset(NULL::{}, %(body)s::json)").format(target)
            if given else temp)
    return sql.SQL(
        "WITH stamp AS MATERIALIZED (SELECT clock_timestamp() AS at),"
        " written AS ("
        " INSERT INTO {target} ({cols}, job_id, accepted_at, ingested_at, updated_at)"
        " {pick} {cols}, %(job_id)s,"
        " coalesce(%(accepted_at)s, stamp.at), stamp.at, stamp.at"
        " FROM {rows} CROSS JOIN stamp"
        "{order}"
        " ON CONFLICT ({keys}) {conflict}"
        " RETURNING ingested_at = updated_at AS inserted)"
        " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted),"
        " {distinct}"
        " FROM written"
    ).format(
        target=target, cols=sql.SQL(", ").join(col_ids), keys=keys, pick=pick, order=order,
        rows=rows, conflict=conflict, distinct=distinct,
    )


def _merge(cursor: Any, statements: _Statements, *, job_id: str, update_existing: bool,
           accepted_at: datetime | None, staged: int,
           unique_keys: bool = False, body: str | None = None) -> dict[str, int]:
    if body is not None:
        merge = (statements.merge_given_updating if update_existing
                 else statements.merge_given_keeping)
    elif unique_keys:
        merge = (statements.merge_unique_updating if update_existing
                 else statements.merge_unique_keeping)
    else:
        merge = statements.merge_updating if update_existing else statements.merge_keeping
    cursor.execute(merge, {"job_id": job_id, "accepted_at": accepted_at, "staged": staged,
                           "body": body})
    inserted, updated, distinct = cursor.fetchone()
    return {
        "inserted": inserted,
        "updated": updated,
        "skipped": distinct - inserted - updated,
        "duplicates_in_batch": staged - distinct,
    }


class StoredChunkMismatch(RuntimeError):
    """PostgreSQL read another number of records from a stored chunk than it holds."""


_NO_COUNTS = {"inserted": 0, "updated": 0, "skipped": 0, "duplicates_in_batch": 0}


def _stored_columns(data_type: DataType) -> list[str]:
    lineage = set(LINEAGE_COLUMNS)
    return [c for c in data_type.all_columns if c not in lineage]


def _partitions_for(conn: Connection, data_type: DataType,
                    records: Sequence[dict[str, Any]]) -> None:
    """The monthly partitions the records' dates need, made before they are written."""
    if data_type.date_column:
        column = data_type.date_column  # canonical records may carry it as ISO text
        ensure_partitions(conn, data_type, (to_date(r.get(column)) for r in records))


def upsert(
    conn: Connection,
    data_type: DataType,
    records: Sequence[dict[str, Any]],
    *,
    job_id: str,
    update_existing: bool = True,
    accepted_at: datetime | None = None,
) -> dict[str, int]:
    """Write `records` into the data type's table; counts inserted, updated and skipped.

    Within the batch the last record of a natural key wins. Across batches the one
    accepted last wins (`accepted_at`, then the job id to break a tie): a batch stored
    after a newer one has written a key leaves that row alone and counts it skipped.
    With `update_existing` False, existing keys are left untouched and counted as skipped.
    """
    if not records:
        return dict(_NO_COUNTS)
    _partitions_for(conn, data_type, records)
    with db.raw_cursor(conn) as cursor:
        statements = _statements(data_type, cursor)
        cursor.execute(_staging(conn, statements))
        cursor.copy_expert(statements.copy, _copy_rows(records, statements.columns,
                                                       statements.json_columns))
        return _merge(cursor, statements, job_id=job_id, update_existing=update_existing,
                      accepted_at=accepted_at, staged=len(records))


def upsert_stored(
    conn: Connection,
    data_type: DataType,
    *,
    job_id: str,
    payload: str,
    seq: int,
    update_existing: bool = True,
    accepted_at: datetime | None = None,
    body: str | None = None,
    unique_keys: bool = False,
    expected: int | None = None,
) -> dict[str, int]:
    """`upsert` of a chunk of canonical records stored in the claim check under (job_id,
    payload, seq), read by PostgreSQL itself: the worker neither fetches and decodes the
    chunk nor builds COPY text of it, which cost more than PostgreSQL's reading the JSON.
    Every record's values must already be of their columns' types (our process stage's
    output); the number of records is the chunk's. `body`: the chunk's text, when the
    worker holds it already (a small chunk, or one carried in the message): sent with the
    statement rather than read from the table.

    `unique_keys`: the caller promises one record per natural key (our process stage
    dedups its output), and the merge skips finding the last of each. A chunk that breaks
    the promise fails the statement when it updates (PostgreSQL refuses to update a row
    twice in one statement); when it only inserts, one record of the key would win.

    `expected`: the chunk's record count, when known. PostgreSQL must read as many: a
    chunk stored as a reference to another (tasks/storage/payloads.py) has no body here
    and would read as none, so a mismatch fails the statement rather than store less.

    A small `body` with `unique_keys` is merged without the staging table (see
    GIVEN_MERGE_BYTES)."""
    if body is not None and unique_keys and len(body) <= GIVEN_MERGE_BYTES:
        return _merge_given(conn, data_type, job_id=job_id, body=body,
                            update_existing=update_existing, accepted_at=accepted_at,
                            expected=expected)
    with db.raw_cursor(conn) as cursor:
        statements = _statements(data_type, cursor)
        # One round trip: the staging table made ready, filled, and what the rows need.
        cursor.execute(
            _staging(conn, statements) + (
                statements.stage_stored if body is None else statements.stage_given),
            {"job_id": job_id, "payload": payload, "seq": seq, "body": body})
        staged, months, partitions = cursor.fetchone()
        if expected is not None and staged != expected:
            raise StoredChunkMismatch(
                f"chunk {seq} of {payload!r} holds {expected} records; PostgreSQL read "
                f"{staged} (a chunk stored as a reference is not read by PostgreSQL)")
        if not staged:
            return dict(_NO_COUNTS)
        if months:
            ensure_partitions(conn, data_type, months, existing=set(partitions or ()))
        return _merge(cursor, statements, job_id=job_id, update_existing=update_existing,
                      accepted_at=accepted_at, staged=staged, unique_keys=unique_keys)


# A chunk's text of at most this many characters, with one record per key, is merged
# straight from the text: the staging table costs a store transaction most of a
# millisecond whatever its size (its check, its rows, and emptying it at the commit),
# while finding the months of the chunk's dates here grows with the chunk. A store
# transaction, measured side by side: 1 record 3.0 ms staged, 2.3 ms given; 10 records
# (5 kB) 3.4 and 2.6 ms; 100 records (48 kB) 4.7 and 4.9 ms.
GIVEN_MERGE_BYTES = 16 * 1024


def _merge_given(conn: Connection, data_type: DataType, *, job_id: str, body: str,
                 update_existing: bool, accepted_at: datetime | None,
                 expected: int | None) -> dict[str, int]:
    """`upsert_stored` of a chunk's text held by the worker, holding one record per key:
    the months its dates need are found here, so the merge reads the text itself."""
    records = jsontext.loads(body)
    if expected is not None and len(records) != expected:
        raise StoredChunkMismatch(f"a chunk given as text holds {len(records)} records, "
                                  f"not {expected}")
    if not records:
        return dict(_NO_COUNTS)
    _partitions_for(conn, data_type, records)
    with db.raw_cursor(conn) as cursor:
        return _merge(cursor, _statements(data_type, cursor), job_id=job_id,
                      update_existing=update_existing, accepted_at=accepted_at,
                      staged=len(records), unique_keys=True, body=body)
