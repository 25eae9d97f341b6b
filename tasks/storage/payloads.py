"""Claim check: batches of records stored in PostgreSQL by (job, name), in chunks.

Celery messages carry only the job id; every stage loads its input from here and saves
its output here, in the same transaction as its status update.

A chunk holds its records as JSON text (`body`), or refers to another chunk of the same
job that holds them, less some positions and with some fields filled (`save_reference`):
what a stage passes on as it came is not stored twice. A reference always names a chunk
with a body.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from psycopg2 import sql
from sqlalchemy import Integer, Text, and_, bindparam, cast, delete, func, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from tasks import jsontext
from tasks.nul import without_nul
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
# Chunks with the chunk each reference names: select CHUNK_COLUMNS from it.
WITH_REFERENCES = payloads_table.outerjoin(_base, and_(
    _base.c.job_id == _stored.job_id, _base.c.name == _stored.same_as,
    _base.c.seq == _stored.same_seq))
# What `decode` takes: the text, the chunk that holds it (this one, or the one a
# reference names) and what the reference changes.
CHUNK_COLUMNS = (func.coalesce(_stored.body, _base.c.body),
                 func.coalesce(_stored.same_as, _stored.name),
                 func.coalesce(_stored.same_seq, _stored.seq), _stored.dropped, _stored.fill)


class MissingChunk(RuntimeError):
    """A reference names a chunk that is not there (its stage's output was replaced)."""


class Origin(NamedTuple):
    """Where a chunk's records are stored: in the chunk (holder_seq) of a payload
    (holder), less the positions `dropped`, with the fields of `fill` set where a record
    has none. A chunk with a body is its own origin, with nothing dropped or filled."""

    holder: str
    holder_seq: int
    dropped: list[int] | None
    fill: dict[str, Any] | None


def decode(body: str | None, holder: str, holder_seq: int, dropped: Sequence[int] | None,
           fill: Mapping[str, Any] | None, name: str, seq: int) -> Any:
    """Chunk `seq` of `name` as records, from what CHUNK_COLUMNS give: its text, the chunk
    that holds the text (itself, or the one a reference names), and what a reference
    changes. A reference to the raw batch reads it as the stage that made the reference
    did: with every NUL replaced (tasks/nul.py; the raw batch itself is read as stored)."""
    if body is None:
        raise MissingChunk(f"chunk {seq} of {name!r} refers to a chunk that is not stored")
    chunk = jsontext.loads(body)
    # A NUL can only be there as the JSON escape: a cheap test of the text first.
    if holder == RAW and name != RAW and "\\u0000" in body:
        chunk = without_nul(chunk)[0]
    # (A reference is only ever made to a chunk of records, and `fill` to objects.)
    chunk = without_positions(chunk, dropped or ())
    if fill:
        for record in chunk:
            for field, value in fill.items():
                if not record.get(field):
                    record[field] = value
    return chunk


def without_positions(records: list[Any], positions: Sequence[int]) -> list[Any]:
    """`records` less those at `positions`, in order."""
    if not positions:
        return records
    left_out = set(positions)
    return [record for i, record in enumerate(records) if i not in left_out]


def compose(before: Sequence[int] | None, dropped: Sequence[int]) -> list[int]:
    """Positions of a chunk left out by a reference that leaves out `before` of it, and
    then `dropped` of what is left: the positions a reference to that chunk leaves out."""
    if not before:
        return sorted(dropped)
    skipped = sorted(before)
    out, j = set(skipped), 0
    for position in sorted(dropped):
        # The position'th one left: skip every position left out at or before it.
        position += j
        while j < len(skipped) and skipped[j] <= position:
            j += 1
            position += 1
        out.add(position)
    return sorted(out)


_SAVE_REFERENCE = insert(payloads_table).from_select(
    ["job_id", "name", "seq", "record_count", "same_as", "same_seq", "dropped", "fill"],
    select(_stored.job_id, cast(bindparam("name"), Text), cast(bindparam("seq"), Integer),
           cast(bindparam("count"), Integer), _stored.name, _stored.seq,
           cast(bindparam("dropped"), _stored.dropped.type),
           cast(bindparam("fill", type_=_stored.fill.type), _stored.fill.type))
    .where(_stored.job_id == bindparam("job_id"), _stored.name == bindparam("same_as"),
           _stored.seq == bindparam("same_seq"), _stored.body.is_not(None)))


def save_reference(conn: Connection, job_id: str, name: str, seq: int, count: int,
                   same_as: str, same_seq: int, dropped: Sequence[int],
                   fill: Mapping[str, Any] | None = None) -> bool:
    """Store chunk `seq` of (job_id, name) as the records of chunk `same_seq` of `same_as`
    less the positions `dropped` (`count` records left), with the fields of `fill` set on
    each record that has none (no value, or an empty one). False, and nothing stored, when
    that chunk is not stored with a body (a reference itself, or carried in a message):
    the caller then stores the records. A chunk PostgreSQL reads itself (the store's
    upsert_stored) is never a reference: only the ingest and validate stages make them."""
    saved = conn.execute(_SAVE_REFERENCE, {
        "job_id": job_id, "name": name, "seq": seq, "count": count, "same_as": same_as,
        "same_seq": same_seq, "dropped": list(dropped) or None, "fill": fill or None})
    return saved.rowcount == 1


def load(conn: Connection, job_id: str, name: str) -> list[Any]:
    """Every record stored under (job_id, name), at once (stages read a chunk at a time:
    tasks/chunks.py)."""
    query = (
        select(_stored.seq, *CHUNK_COLUMNS).select_from(WITH_REFERENCES)
        .where(_stored.job_id == job_id, _stored.name == name)
        .order_by(_stored.seq)
    )
    records: list[Any] = []
    for seq, *stored in conn.execute(query):
        records.extend(decode(*stored, name, seq))
    return records


_DISCARD = delete(payloads_table).where(payloads_table.c.job_id == bindparam("job_id"),
                                        payloads_table.c.name.in_(bindparam("names")))


def discard(conn: Connection, job_id: str, names: Iterable[str]) -> None:
    conn.execute(_DISCARD, {"job_id": job_id, "names": list(names)})
