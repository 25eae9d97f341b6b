"""Claim check: batches of records stored in PostgreSQL by (job, name), in chunks.

Celery messages carry only the job id; every stage loads its input from here and saves
its output here, in the same transaction as its status update.

A chunk holds its records as JSON text (`body`), or refers to another chunk of the same
job that holds them, less some positions (`save_reference`): what a stage passes on
unchanged is not stored twice. A reference always names a chunk with a body.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from psycopg2 import sql
from sqlalchemy import Integer, Text, and_, bindparam, cast, delete, func, insert, select
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


_stored = payloads_table.c
_base = payloads_table.alias("base")
# Chunks with the chunk each reference names: select RESOLVED_BODY and `dropped` from it.
WITH_REFERENCES = payloads_table.outerjoin(_base, and_(
    _base.c.job_id == _stored.job_id, _base.c.name == _stored.same_as,
    _base.c.seq == _stored.same_seq))
RESOLVED_BODY = func.coalesce(_stored.body, _base.c.body)


class MissingChunk(RuntimeError):
    """A reference names a chunk that is not there (its stage's output was replaced)."""


def decode(body: str | None, dropped: Sequence[int] | None, name: str, seq: int) -> Any:
    """A chunk's records from what WITH_REFERENCES gives: its text, and the positions of
    the chunk it refers to that it leaves out."""
    if body is None:
        raise MissingChunk(f"chunk {seq} of {name!r} refers to a chunk that is not stored")
    # (A reference is only ever made to a chunk of records.)
    return without_positions(jsontext.loads(body), dropped or ())


def without_positions(records: list[Any], positions: Sequence[int]) -> list[Any]:
    """`records` less those at `positions`, in order."""
    if not positions:
        return records
    left_out = set(positions)
    return [record for i, record in enumerate(records) if i not in left_out]


_SAVE_REFERENCE = insert(payloads_table).from_select(
    ["job_id", "name", "seq", "record_count", "same_as", "same_seq", "dropped"],
    select(_stored.job_id, cast(bindparam("name"), Text), cast(bindparam("seq"), Integer),
           cast(bindparam("count"), Integer), _stored.name, _stored.seq,
           cast(bindparam("dropped"), _stored.dropped.type))
    .where(_stored.job_id == bindparam("job_id"), _stored.name == bindparam("same_as"),
           _stored.seq == bindparam("same_seq"), _stored.body.is_not(None)))


def save_reference(conn: Connection, job_id: str, name: str, seq: int, count: int,
                   same_as: str, same_seq: int, dropped: Sequence[int]) -> bool:
    """Store chunk `seq` of (job_id, name) as the records of chunk `same_seq` of `same_as`
    less the positions `dropped` (`count` records left). False, and nothing stored, when
    that chunk is not stored with a body (a reference itself, or carried in a message):
    the caller then stores the records."""
    saved = conn.execute(_SAVE_REFERENCE, {
        "job_id": job_id, "name": name, "seq": seq, "count": count, "same_as": same_as,
        "same_seq": same_seq, "dropped": list(dropped) or None})
    return saved.rowcount == 1


def load(conn: Connection, job_id: str, name: str) -> list[Any]:
    """Every record stored under (job_id, name), at once (stages read a chunk at a time:
    tasks/chunks.py)."""
    query = (
        select(_stored.seq, RESOLVED_BODY, _stored.dropped).select_from(WITH_REFERENCES)
        .where(_stored.job_id == job_id, _stored.name == name)
        .order_by(_stored.seq)
    )
    records: list[Any] = []
    for seq, body, dropped in conn.execute(query):
        records.extend(decode(body, dropped, name, seq))
    return records


_DISCARD = delete(payloads_table).where(payloads_table.c.job_id == bindparam("job_id"),
                                        payloads_table.c.name.in_(bindparam("names")))


def discard(conn: Connection, job_id: str, names: Iterable[str]) -> None:
    conn.execute(_DISCARD, {"job_id": job_id, "names": list(names)})
