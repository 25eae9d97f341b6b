"""Keys that occur more than once in a batch too large to hold in memory at once.

A stage feeds the keys of every chunk (with each record's position in the batch) to a
temporary table (a first pass, `in_batch`); PostgreSQL groups them, and the stage then
asks, chunk by chunk, which of its positions hold a repeated key and whether each is that
key's last occurrence.
Memory in the worker stays one chunk's keys, whatever the batch's size.

Keys are compared as text (`key_text`): numbers that are equal in Python (1, 1.0,
Decimal("1.00")) have one text, so the comparison agrees with a dict's.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from psycopg2 import sql
from sqlalchemy.engine import Connection

from tasks import jsontext
from tasks.chunks import StageInput
from tasks.storage import db


def _tagged(value: Any) -> list[Any]:
    """A value with a tag, so that values equal in Python share one text and others do
    not: 1, 1.0, True and Decimal("1.00") are one number; aware datetimes are compared
    as instants (in UTC)."""
    if isinstance(value, int | float | Decimal):  # bool is an int, equal to 0 or 1
        number = Decimal(value)
        if number.is_nan():
            return ["nan", None]  # never equal to anything, NaN included: see `add`
        # normalize() gives equal values one coefficient and exponent (1E+3 for 1000
        # and 1000.0); str() then never expands a huge exponent into digits.
        return ["n", "0" if number == 0 else str(number.normalize())]
    if isinstance(value, datetime) and value.tzinfo is not None:
        return ["t", value.astimezone(UTC).isoformat()]
    return ["v", value]


def key_text(key: Any) -> str | None:
    """One text per key value (a field's value, or a tuple of them); None for a key
    holding NaN, which equals nothing (a dict would not find it twice either)."""
    parts = [_tagged(v) for v in key] if isinstance(key, tuple) else [_tagged(key)]
    if any(tag == "nan" for tag, _ in parts):
        return None
    return jsontext.dumps(parts, sort_keys=True).decode()


class RepeatedKeys:
    """Repeated keys of one batch, in groups (one per rule or key kind), found by
    PostgreSQL. Use: `add` every chunk's keys, `finish`, then `within` per chunk. The
    tables live until the end of the stage's transaction."""

    def __init__(self, conn: Connection, name: str) -> None:
        # `name` is a constant of the calling stage, never a user's string.
        self._conn = conn
        self._keys = sql.Identifier(f"_keys_{name}")
        self._repeated = sql.Identifier(f"_repeated_{name}")
        with db.raw_cursor(self._conn) as cursor:
            cursor.execute(sql.SQL(
                "CREATE TEMP TABLE {} (grp int, pos bigint, key text) ON COMMIT DROP"
            ).format(self._keys))

    @classmethod
    def in_batch(cls, conn: Connection, name: str, source: StageInput,
                 keys_of: Callable[[list[Any]], Iterable[tuple[int, int, Any]]],
                 ) -> RepeatedKeys:
        """A first pass over `source`: `keys_of(chunk)` gives (group, index in the chunk,
        key) for the records whose keys are compared."""
        repeats = cls(conn, name)
        for offset, chunk in source.chunks(report_progress=False):
            if isinstance(chunk, list):
                repeats.add(keys_of(chunk), offset)
        repeats.finish()
        return repeats

    def add(self, keyed: Iterable[tuple[int, int, Any]], offset: int) -> None:
        """(group, index, key) of a chunk starting at `offset`; a None key is not compared."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerows((group, offset + index, text)
                         for group, index, key in keyed
                         if key is not None and (text := key_text(key)) is not None)
        buffer.seek(0)
        with db.raw_cursor(self._conn) as cursor:
            cursor.copy_expert(
                sql.SQL("COPY {} (grp, pos, key) FROM STDIN WITH (FORMAT csv)")
                .format(self._keys).as_string(cursor), buffer)

    def finish(self) -> None:
        with db.raw_cursor(self._conn) as cursor:
            cursor.execute(sql.SQL(
            "CREATE TEMP TABLE {repeated} ON COMMIT DROP AS"
                " SELECT grp, pos, pos = max(pos) OVER (PARTITION BY grp, key) AS last"
                " FROM {keys} WHERE (grp, key) IN"
                " (SELECT grp, key FROM {keys} GROUP BY grp, key HAVING count(*) > 1);"
                " CREATE INDEX ON {repeated} (pos); ANALYZE {repeated}; DROP TABLE {keys}"
            ).format(repeated=self._repeated, keys=self._keys))

    def within(self, start: int, stop: int) -> dict[int, dict[int, bool]]:
        """Per group, the repeated positions in [start, stop), relative to `start`, each
        mapped to whether it is its key's last occurrence in the batch."""
        with db.raw_cursor(self._conn) as cursor:
            cursor.execute(sql.SQL(
                "SELECT grp, pos, last FROM {} WHERE pos >= %s AND pos < %s"
            ).format(self._repeated), (start, stop))
            rows = cursor.fetchall()
        found: dict[int, dict[int, bool]] = {}
        for group, pos, last in rows:
            found.setdefault(group, {})[pos - start] = last
        return found

    def superseded(self, start: int, stop: int) -> set[int]:
        """Positions in [start, stop), relative to `start`, whose key (of group 0) occurs
        again later in the batch: the last record of a key wins."""
        found = self.within(start, stop).get(0, {})
        return {position for position, last in found.items() if not last}
