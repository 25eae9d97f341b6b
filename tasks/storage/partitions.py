"""Monthly partitions of the fact tables, created as data arrives.

The store stage calls `ensure_partitions` with the dates of a batch before it writes.
Missing months are created in a short transaction of their own, serialised per table by
an advisory lock, so concurrent workers never race on the same partition and a long
store transaction never holds DDL locks. A partition is created as a plain table and
then ATTACHed: that takes only a SHARE UPDATE EXCLUSIVE lock on the parent, so reads and
writes of the table go on meanwhile, and the DEFAULT partition's CHECK (date IS NULL)
spares PostgreSQL a scan of it. ATTACH does lock the DEFAULT partition exclusively for
a moment; it waits for that at most LOCK_TIMEOUT, so a long reader of undated rows can
delay a store (which is then retried like any database error) but never stall the table.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date

from psycopg2 import errors as pg_errors
from psycopg2 import sql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from tasks.datatypes import DataType
from tasks.storage.schema import is_partitioned

log = logging.getLogger(__name__)

# Namespace of the per-table advisory lock (the second key is hashtext(table name)).
PARTITION_LOCK = 727275
# How long partition DDL waits for its locks, and how often it tries, before giving up.
LOCK_TIMEOUT = "5s"
DDL_ATTEMPTS = 3
# A batch spanning more distinct new months than this is refused, not partitioned:
# it is almost always a date column with garbage in it.
MAX_NEW_PARTITIONS = 240


class TooManyPartitions(ValueError):
    """A batch whose dates would create more than MAX_NEW_PARTITIONS monthly partitions."""


def partition_name(table: str, month: date) -> str:
    return f"{table}_p{month.year:04d}{month.month:02d}"


def month_of(day: date) -> date:
    return day.replace(day=1)


def existing_partitions(conn: Connection, table: str) -> set[str]:
    rows = conn.exec_driver_sql(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = %(table)s::regclass", {"table": table},
    ).scalars()
    return set(rows)


def ensure_partitions(conn: Connection, data_type: DataType, days: Iterable[date | None],
                      existing: set[str] | None = None) -> int:
    """Create the monthly partitions the given dates need; returns how many were created.
    `existing`: the table's partitions, when the caller has just read them."""
    if not is_partitioned(data_type):
        return 0
    table = data_type.table_name
    months = sorted({month_of(d) for d in days if d is not None})
    if not months:
        return 0
    have = existing_partitions(conn, table) if existing is None else existing
    missing = [m for m in months if partition_name(table, m) not in have]
    if not missing:
        return 0
    if len(missing) > MAX_NEW_PARTITIONS:
        raise TooManyPartitions(
            f"the batch's dates span {len(missing)} new months of {table}; at most "
            f"{MAX_NEW_PARTITIONS} are created at once (check the date column)")
    if _holds_default_partition(conn, table):
        # This transaction wrote undated rows: a separate session would wait for it.
        return _create(conn, table, missing)
    attempt = 1
    while True:
        try:
            with conn.engine.connect() as ddl, ddl.begin():
                ddl.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                return _create(ddl, table, missing)
        except OperationalError as exc:  # a lock timeout ends the store like any DB error
            if attempt >= DDL_ATTEMPTS or not isinstance(exc.orig, pg_errors.LockNotAvailable):
                raise
            log.warning("%s: partition DDL waited past %s for a lock (attempt %d of %d)",
                        table, LOCK_TIMEOUT, attempt, DDL_ATTEMPTS)
            attempt += 1


def _holds_default_partition(conn: Connection, table: str) -> bool:
    return bool(conn.exec_driver_sql(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = pg_backend_pid() "
        "AND locktype = 'relation' AND relation = to_regclass(%(name)s))",
        {"name": f"{table}_pdefault"},
    ).scalar())


def _create(conn: Connection, table: str, months: list[date]) -> int:
    conn.exec_driver_sql(
        "SELECT pg_advisory_xact_lock(%(ns)s, hashtext(%(table)s))",
        {"ns": PARTITION_LOCK, "table": table},
    )
    have = existing_partitions(conn, table)  # another worker may have made them meanwhile
    quote = conn.connection.dbapi_connection
    created = 0
    for month in months:
        name = partition_name(table, month)
        if name in have:
            continue
        part, parent = sql.Identifier(name), sql.Identifier(table)
        conn.exec_driver_sql(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {part} (LIKE {parent} INCLUDING DEFAULTS)"
        ).format(part=part, parent=parent).as_string(quote))
        conn.exec_driver_sql(sql.SQL(
            "ALTER TABLE {parent} ATTACH PARTITION {part} "
            "FOR VALUES FROM (%(start)s) TO ((%(start)s::date + interval '1 month')::date)"
        ).format(part=part, parent=parent).as_string(quote), {"start": month})
        created += 1
    if created:
        log.info("%s: created %d monthly partition(s)", table, created)
    return created
