"""A stage's input and output, one chunk at a time: what bounds a worker's memory.

A batch is stored as chunks of records (`payloads`). A stage reads a chunk, works on it,
writes its output chunk and its quarantined records, and lets go of it before reading
the next, so a worker holds one chunk whatever the batch's size. All of it happens in
the stage's one transaction: a crash still leaves the stage either done or to be redone.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import ARRAY, BigInteger, Integer, Text, bindparam, column, func, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from tasks import progress
from tasks.nul import without_nul
from tasks.stage import StageOutput
from tasks.storage import payloads, quarantine
from tasks.storage.schema import jobs_table, payloads_table

_payload = payloads_table.c
_IN_PAYLOAD = (_payload.job_id == bindparam("job_id"), _payload.name == bindparam("name"))
# Built once (see tasks/storage/jobs.py): the chunk after `after`, the first chunk with
# the number of chunks, and every chunk's record count. A chunk that refers to another
# is read as that one's text and what the reference changes (payloads.decode).
_NEXT_CHUNK = (select(_payload.seq, *payloads.CHUNK_COLUMNS)
               .select_from(payloads.WITH_REFERENCES)
               .where(*_IN_PAYLOAD, _payload.seq > bindparam("after"))
               .order_by(_payload.seq).limit(1))
_FIRST_CHUNK = (select(_payload.seq, *payloads.CHUNK_COLUMNS, func.count().over())
                .select_from(payloads.WITH_REFERENCES)
                .where(*_IN_PAYLOAD).order_by(_payload.seq).limit(1))
_CHUNK_SIZES = (select(_payload.seq, _payload.record_count)
                .where(*_IN_PAYLOAD).order_by(_payload.seq))


# A first chunk that takes more than this (stored, so compressed) is left out of
# `lock_job_with_input` and read when the stage reads it: a stage that lets PostgreSQL
# read its input (the store) never needs it, and a batch that big pays one more round
# trip without noticing.
HEAD_BODY_BYTES = 16 * 1024


class InputHead(NamedTuple):
    """What `lock_job_with_input` read of a stage's input."""

    name: str | None  # the payload read (None: no chunk seen)
    seq: int | None  # its first chunk (None: no chunk seen)
    body: str | None  # that chunk's text, when small
    record_count: int | None  # that chunk's records
    chunks: int
    # A reference's: the chunk holding `body`, its positions left out, fields to fill.
    holder: str | None = None
    holder_seq: int | None = None
    dropped: list[int] | None = None
    fill: dict[str, Any] | None = None


# The job row, locked as jobs.get(for_update=True) locks it, with the head of a stage's
# input: the claim and the stage's first read in one round trip. The input is the output
# of the stage before it in the job's list, or the raw batch (as jobs.input_name says).
_LOCK_WITH_HEAD = text(f"""
SELECT {", ".join(f"j.{c.name}" for c in jobs_table.c)},
       head.name, head.seq, head.record_count, head.chunks,
       CASE WHEN pg_column_size(head.body) <= :small THEN head.body END,
       head.holder, head.holder_seq, head.dropped, head.fill
FROM {jobs_table.name} j
LEFT JOIN LATERAL (
    SELECT p.name, p.seq, p.record_count, coalesce(p.body, b.body) AS body,
           coalesce(p.same_as, p.name) AS holder, coalesce(p.same_seq, p.seq) AS holder_seq,
           p.dropped, p.fill,
           count(*) OVER () AS chunks
    FROM {payloads_table.name} p
    LEFT JOIN {payloads_table.name} b
        ON b.job_id = p.job_id AND b.name = p.same_as AND b.seq = p.same_seq
    WHERE p.job_id = j.id AND p.name = (
        SELECT before FROM (
            SELECT s.stage ->> 'name' AS name,
                   lag(s.stage ->> 'name', 1, :raw) OVER (ORDER BY s.n) AS before
            FROM jsonb_array_elements(j.stages) WITH ORDINALITY AS s(stage, n)) named
        WHERE name = :stage)
    ORDER BY p.seq LIMIT 1) head ON true
WHERE j.id = :job_id
FOR NO KEY UPDATE OF j
""").columns(*jobs_table.c, column("head_name", Text), column("head_seq", Integer),
             column("head_records", Integer), column("head_chunks", BigInteger),
             column("head_body", Text), column("head_holder", Text),
             column("head_holder_seq", Integer), column("head_dropped", ARRAY(Integer)),
             column("head_fill", JSONB))
# (Every name in it comes from the declarations, none from input.)


def lock_job_with_input(conn: Connection, job_id: str,
                        stage_name: str) -> tuple[dict[str, Any] | None, InputHead]:
    """The job row locked for `stage_name`'s claim (see jobs.claim_stage's `locked`), and
    the head of that stage's input for its StageInput."""
    row = conn.execute(_LOCK_WITH_HEAD, {"job_id": job_id, "stage": stage_name,
                                         "raw": payloads.RAW,
                                         "small": HEAD_BODY_BYTES}).first()
    if row is None:
        return None, InputHead(None, None, None, None, 0)
    width = len(jobs_table.c)
    job = dict(zip(jobs_table.c.keys(), row[:width], strict=True))
    name, seq, record_count, chunks, body, *reference = row[width:]
    return job, InputHead(name, seq, body, record_count, chunks or 0, *reference)


class StageInput:
    """The chunks of one stored batch, read in order, each decoded when its turn comes.

    The first chunk comes with the number of chunks: read with the claim (`head`), or
    fetched on first use, so a stage can tell before its first pass whether the batch
    spans chunks; `chunks()` may be called again for another pass. A stage that lets
    PostgreSQL read the chunks (`stored()`) never fetches them.
    """

    def __init__(self, conn: Connection, job_id: str, name: str,
                 head: InputHead | None = None) -> None:
        """`head`: what `lock_job_with_input` read of this input (a big first chunk's
        body is still fetched on first use)."""
        self.conn, self.job_id, self.name = conn, job_id, name
        self._fetched = False
        # (seq, then what payloads.decode takes) of the first chunk.
        self._first: tuple[Any, ...] | None = None
        # Where the records of the chunk chunks() yielded last are stored (what a sink's
        # pass_on refers to).
        self.origin: payloads.Origin | None = None
        self._chunk_count = 0
        self._nul_by_chunk: dict[int, int] = {}
        # A head without a chunk is read again: every stored input has one, so the claim
        # must have waited for the job row while the stage before wrote its output, and
        # the input was read as it was before that commit. (What it did see is final: a
        # stage's output is committed with its success, at once.)
        # (A head of another payload is never taken: the claim's SQL and jobs.input_name
        # must agree on which payload a stage reads.)
        self._head = head if head is not None and head.seq is not None and \
            head.name == name else None
        if self._head is not None and self._head.body is not None:
            head = self._head
            self._first = (head.seq, head.body, head.holder or name,
                           head.seq if head.holder_seq is None else head.holder_seq,
                           head.dropped, head.fill)
            self._chunk_count = self._head.chunks
            self._fetched = True

    def _where(self, **more: int) -> dict[str, Any]:
        return {"job_id": self.job_id, "name": self.name, **more}

    def _fetch_first(self) -> None:
        if not self._fetched:
            row = self.conn.execute(_FIRST_CHUNK, self._where()).first()
            self._first = tuple(row[:-1]) if row else None
            self._chunk_count = row[-1] if row else 0
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

    def held_chunk(self) -> tuple[int, str] | None:
        """(seq, text) of the first chunk when it came with the head (a small one read
        with the claim, or a carried input), without reading anything; never a reference
        (whose text is another chunk's)."""
        head = self._head
        if head is None or head.seq is None or head.body is None or \
                head.holder not in (None, head.name):
            return None
        return head.seq, head.body

    def stored(self) -> list[tuple[int, int]]:
        """(seq, record count) of every chunk, in order, without their bodies."""
        head = self._head
        if head is not None and head.chunks == 1:
            return [(head.seq, head.record_count)]
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
        seq, *stored = self._first
        while True:
            chunk = payloads.decode(*stored, self.name, seq)
            self.origin = payloads.Origin(*stored[1:])
            # A NUL can only be there as the JSON escape: a cheap test of the text first.
            if self.name == payloads.RAW and "\\u0000" in stored[0]:
                chunk, self._nul_by_chunk[seq] = without_nul(chunk)
            del stored  # the text and the decoded chunk are never both kept past this point
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
            seq, *stored = row


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

    def pass_on(self, source: StageInput, records: Sequence[Any], dropped: Sequence[int],
                fill: Mapping[str, Any] | None = None) -> None:
        """`records` go on: the caller vouches that they are the chunk `source` yielded
        last, as it came, less the positions `dropped`, with the fields of `fill` set on
        each record that has none. They are then stored as a reference to where that
        chunk's records are (payloads.save_reference) rather than again, unless most of
        them are left out, or the chunk was carried in a message."""
        origin = source.origin
        if not (self.keep_records and records and origin is not None) or \
                (fill and origin.fill):  # (never needed: fills of two stages)
            self.write(records)
            return
        left_out = payloads.compose(origin.dropped, dropped)
        if len(left_out) <= len(records) and payloads.save_reference(
                self.conn, self.job_id, self.name, self._seq, len(records), origin.holder,
                origin.holder_seq, left_out, fill or origin.fill):
            self.written += len(records)
            self._seq += 1
            return
        self.write(records)

    def reject(self, rejected: Sequence[quarantine.Rejected], offset: int = 0) -> None:
        """Refused records; their indices are relative to the chunk starting at `offset`."""
        self.rejected += len(rejected)
        quarantine.save(self.conn, self.job_id, self.name, rejected, offset=offset)

    def take(self, output: StageOutput, offset: int = 0, *,
             passed_from: StageInput | None = None,
             fill: Mapping[str, Any] | None = None) -> None:
        """A core's output over the chunk starting at `offset`: its records go on, its
        refused ones to quarantine, and its counts add up to the stage's (`summary`).
        `passed_from`: the records are the chunk that input yielded last, less the
        refused ones, with `fill`'s fields set where missing (see pass_on)."""
        if passed_from is not None:
            self.pass_on(passed_from, output.records, [r.index for r in output.rejected],
                         fill)
        else:
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
