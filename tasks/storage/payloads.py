"""Claim check: batches of records stored in PostgreSQL by (job, name), in chunks.

Celery messages carry only the job id; every stage loads its input from here and saves
its output here, in the same transaction as its status update.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from psycopg2 import sql
from sqlalchemy import bindparam, delete, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from tasks import jsontext
from tasks.storage import db
from tasks.storage.schema import payloads_table

RAW = "raw"
DEFAULT_CHUNK = 10_000


def encode(records: Sequence[Any]) -> bytes:
    """Records as the UTF-8 JSON text a chunk's body holds."""
    return jsontext.dumps(records)


# Binary COPY: the signature, no flags, no header extension; and the end-of-data marker.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY_END = struct.pack("!h", -1)
_COPY_COLUMNS = ("job_id", "name", "seq", "record_count", "body")
_COPY_STATEMENT = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT binary)").format(
    sql.Identifier(payloads_table.name),
    sql.SQL(", ").join(sql.Identifier(payloads_table.c[c].name) for c in _COPY_COLUMNS))


class _CopyStream:
    """Binary COPY data for psycopg2's copy_expert, read piece by piece: a chunk's body is
    encoded when its turn comes and sent as it is, never joined with the others."""

    def __init__(self, job_id: str, name: str,
                 chunks: Iterable[tuple[int, int, bytes]]) -> None:
        self._pieces = self._generate(uuid.UUID(job_id).bytes, name.encode(), chunks)
        # What failed while producing the data (a record orjson cannot encode): psycopg2
        # reports it as a cancelled COPY, which must not pass for a database error.
        self.error: BaseException | None = None

    @staticmethod
    def _generate(key: bytes, label: bytes,
                  chunks: Iterable[tuple[int, int, bytes]]) -> Iterator[bytes]:
        yield _COPY_HEADER
        for seq, count, body in chunks:
            # 5 fields, each its length then its bytes: uuid, text, int4, int4, text.
            yield struct.pack(f"!hi16si{len(label)}siiiii", 5, 16, key, len(label), label,
                              4, seq, 4, count, len(body))
            if body:  # an empty piece would end the data
                yield body
        yield _COPY_END

    def read(self, size: int = -1) -> bytes:
        try:
            return next(self._pieces, b"")
        except BaseException as exc:  # psycopg2 swallows it, whatever it is
            self.error = exc
            raise


def _copy_in(conn: Connection, job_id: str, name: str,
             chunks: Iterable[tuple[int, int, bytes]]) -> None:
    """Insert (seq, record_count, body) chunks by binary COPY. Sent as a literal in an
    INSERT, a body of megabytes costs PostgreSQL's SQL lexer a pass over every byte (5 %
    of the pipeline's whole CPU under load); COPY takes the bytes as they are."""
    stream = _CopyStream(job_id, name, chunks)
    try:
        with db.raw_cursor(conn) as cursor:
            cursor.copy_expert(_COPY_STATEMENT.as_string(cursor), stream)
    except DBAPIError:
        if stream.error is not None:
            raise stream.error from None
        raise


def save(
    conn: Connection, job_id: str, name: str, records: Sequence[Any], chunk: int = DEFAULT_CHUNK,
    first_seq: int = 0, replace: bool = False,
) -> int:
    """Store `records` under (job_id, name) in chunks; returns the next free sequence number.

    `replace`: a stage that runs again (a redelivered message) replaces what an earlier
    attempt left.
    """
    if replace:
        discard(conn, job_id, [name])
    # An empty output is still an output (one chunk of []): the next stage must find it.
    starts = range(0, max(len(records), 1), chunk)
    parts = (records[start:start + chunk] for start in starts)
    _copy_in(conn, job_id, name, ((first_seq + n, len(part), encode(part))
                                  for n, part in enumerate(parts)))
    return first_seq + len(starts)


def save_encoded(conn: Connection, job_id: str, name: str, seq: int, count: int,
                 body: bytes) -> None:
    """Store one chunk that is already JSON text (a streamed upload)."""
    _copy_in(conn, job_id, name, [(seq, count, body)])


def load(conn: Connection, job_id: str, name: str) -> list[Any]:
    """Every record stored under (job_id, name), at once (stages read a chunk at a time:
    tasks/chunks.py)."""
    query = (
        select(payloads_table.c.body)
        .where(payloads_table.c.job_id == job_id, payloads_table.c.name == name)
        .order_by(payloads_table.c.seq)
    )
    records: list[Any] = []
    for (body,) in conn.execute(query):
        records.extend(jsontext.loads(body))
    return records


_DISCARD = delete(payloads_table).where(payloads_table.c.job_id == bindparam("job_id"),
                                        payloads_table.c.name.in_(bindparam("names")))


def discard(conn: Connection, job_id: str, names: Iterable[str]) -> None:
    conn.execute(_DISCARD, {"job_id": job_id, "names": list(names)})
