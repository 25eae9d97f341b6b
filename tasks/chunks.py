"""A stage's input and output, one chunk at a time: what bounds a worker's memory.

A batch is stored as chunks of records (`payloads`). A stage reads a chunk, works on it,
writes its output chunk and its quarantined records, and lets go of it before reading
the next, so a worker holds one chunk whatever the batch's size. All of it happens in
the stage's one transaction: a crash still leaves the stage either done or to be redone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection

from tasks import progress
from tasks.nul import without_nul
from tasks.stage import StageOutput
from tasks.storage import payloads, quarantine
from tasks.storage.schema import payloads_table

_table = payloads_table.c
_IN_PAYLOAD = (_table.job_id == bindparam("job_id"), _table.name == bindparam("name"))
# Built once (see tasks/storage/jobs.py): the chunk after `after`, the first chunk with
# the number of chunks, and every chunk's record count.
_NEXT_CHUNK = (select(_table.seq, _table.body)
               .where(*_IN_PAYLOAD, _table.seq > bindparam("after"))
               .order_by(_table.seq).limit(1))
_FIRST_CHUNK = (select(_table.seq, _table.body, func.count().over())
                .where(*_IN_PAYLOAD).order_by(_table.seq).limit(1))
_CHUNK_SIZES = select(_table.seq, _table.record_count).where(*_IN_PAYLOAD).order_by(_table.seq)


class StageInput:
    """The chunks of one stored batch, read in order, each decoded when its turn comes.

    The first chunk is fetched with the number of chunks on first use (one round trip for
    the common one-chunk job), so a stage can tell before its first pass whether the
    batch spans chunks; `chunks()` may be called again for another pass. A stage that
    lets PostgreSQL read the chunks (`stored()`) never fetches them.
    """

    def __init__(self, conn: Connection, job_id: str, name: str) -> None:
        self.conn, self.job_id, self.name = conn, job_id, name
        self._fetched = False
        self._first: tuple[int, str] | None = None
        self._chunk_count = 0
        self._nul_by_chunk: dict[int, int] = {}

    def _where(self, **more: int) -> dict[str, Any]:
        return {"job_id": self.job_id, "name": self.name, **more}

    def _fetch_first(self) -> None:
        if not self._fetched:
            row = self.conn.execute(_FIRST_CHUNK, self._where()).first()
            self._first = (row[0], row[1]) if row else None
            self._chunk_count = row[2] if row else 0
            self._fetched = True

    @property
    def chunk_count(self) -> int:
        self._fetch_first()
        return self._chunk_count

    @property
    def spans_chunks(self) -> bool:
        return self.chunk_count > 1

    @property
    def nul_replaced(self) -> int:
        """NUL characters replaced in the raw batch's strings (by chunks())."""
        return sum(self._nul_by_chunk.values())

    def stored(self) -> list[tuple[int, int]]:
        """(seq, record count) of every chunk, in order, without their bodies."""
        return [(seq, count) for seq, count in self.conn.execute(_CHUNK_SIZES, self._where())]

    def chunks(self, report_progress: bool = True) -> Iterator[tuple[int, Any]]:
        """(offset of the chunk's first record in the batch, decoded chunk), in order. A
        platform response stored whole is one chunk that is not a list (offset 0). Progress
        is reported as each chunk starts (not in a stage's first pass over its input)."""
        self._fetch_first()
        if self._first is None:
            yield 0, []  # no stored input: an empty batch
            return
        offset = 0
        seq, body = self._first
        while True:
            chunk = orjson.loads(body)
            # A NUL can only be there as the JSON escape: a cheap test of the text first.
            if self.name == payloads.RAW and "\\u0000" in body:
                chunk, self._nul_by_chunk[seq] = without_nul(chunk)
            del body  # the text and the decoded chunk are never both kept past this point
            if report_progress:
                progress.enter_chunk(offset)
            yield offset, chunk
            offset += len(chunk) if isinstance(chunk, list) else 0
            del chunk
            if self._chunk_count == 1:
                return
            row = self.conn.execute(_NEXT_CHUNK, self._where(after=seq)).first()
            if row is None:
                return
            seq, body = row


class StageSink:
    """Where a stage puts what it produces, chunk by chunk, in the stage's transaction:
    records that go on (to the next stage's input) and quarantined records."""

    def __init__(self, conn: Connection, job_id: str, name: str, *, keep_records: bool = True,
                 replace: bool = False) -> None:
        self.conn, self.job_id, self.name = conn, job_id, name
        self.keep_records = keep_records
        self.written = 0
        self.rejected = 0
        self._seq = 0
        self._records_in = 0
        self._records_out: int | None = None
        self._result: dict[str, Any] = {}
        if replace:  # a stage run again replaces what an earlier attempt left
            payloads.discard(conn, job_id, [name])

    def write(self, records: Sequence[Any]) -> None:
        """Records that go on to the next stage."""
        self.written += len(records)
        if self.keep_records and records:
            self._seq = payloads.save(self.conn, self.job_id, self.name, records,
                                      first_seq=self._seq)

    def reject(self, rejected: Sequence[quarantine.Rejected], offset: int = 0) -> None:
        """Refused records; their indices are relative to the chunk starting at `offset`."""
        self.rejected += len(rejected)
        quarantine.save(self.conn, self.job_id, self.name, rejected, offset=offset)

    def take(self, output: StageOutput, offset: int = 0) -> None:
        """A core's output over the chunk starting at `offset`: its records go on, its
        refused ones to quarantine, and its counts add up to the stage's (`summary`)."""
        self.write(output.records)
        self.reject(output.rejected, offset)
        self._records_in += output.records_in
        if output.records_out is not None:
            self._records_out = (self._records_out or 0) + output.records_out
        _add_counts(self._result, output.result)

    def summary(self) -> StageOutput:
        """What the stage returns after taking every chunk's output."""
        return StageOutput(records=[], result=self._result, records_in=self._records_in,
                           records_out=self._records_out)

    def close(self) -> None:
        """An empty output is still an output: the next stage must find it."""
        if self.keep_records and self._seq == 0:
            self._seq = payloads.save(self.conn, self.job_id, self.name, [])


def _add_counts(total: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """A stage's result over a batch from its results over chunks: counts add up, any
    other value (a timestamp, a status, a list of names) is the latest chunk's."""
    for key, value in part.items():
        before = total.get(key)
        if (type(value) is int and type(before) is int):
            total[key] = before + value
        else:
            total[key] = value
    return total
