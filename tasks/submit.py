"""Accepting work: the job row and its raw batch committed together, then the chain enqueued.

Once `accept` returns, the batch is durable: if the broker is down or loses the message,
the recovery sweep re-enqueues the job from PostgreSQL.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from typing import Any

from celery import Celery, chain
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from tasks.carry import CARRY_BYTES, Carry, describe
from tasks.celery_app import PIPELINE_STAGES, TASK_NAMES
from tasks.storage import jobs, payloads, quarantine

log = logging.getLogger(__name__)


class IdempotencyConflict(ValueError):
    """The Idempotency-Key was already used with a different request body."""

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used with a different request "
                         f"(job {job_id})")
        self.job_id = job_id


def _existing(engine: Engine, key: str, request_hash: str | None) -> dict[str, Any] | None:
    with engine.connect() as conn:
        job = jobs.find_by_idempotency_key(conn, key)
    if job is not None and job["request_hash"] != request_hash:
        raise IdempotencyConflict(key, job["id"])
    return job


def accept(
    engine: Engine,
    celery_app: Celery,
    *,
    kind: str,
    stages: Sequence[str],
    data_type: str,
    source: str | None,
    data: Any,
    records_count: int,
    options: Mapping[str, Any] | None = None,
    chunk_records: int = payloads.DEFAULT_CHUNK,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> dict[str, Any]:
    """Store the job and its raw batch in one transaction, then enqueue its stages.

    With an idempotency key already used for the same request, the existing job is
    returned (with "replayed": True) and nothing new is stored or sent.
    """
    if idempotency_key is not None:
        existing = _existing(engine, idempotency_key, request_hash)
        if existing is not None:
            return {**existing, "replayed": True}
    job_id = str(uuid.uuid4())
    records = data.get("records") if isinstance(data, Mapping) else None
    # Only the ingest stage understands native responses; the others take data.records.
    as_records = isinstance(records, list) and (len(data) == 1 or stages[0] != "ingest")
    options = {**(options or {}), "raw_format": "records" if as_records else "native"}
    try:
        job, body = _store(engine, job_id, kind, data_type, source, stages, options,
                           records_count, idempotency_key, request_hash, data, as_records,
                           chunk_records)
    except IntegrityError:
        # Two requests with the same key at once: the other one won; answer with its job.
        if idempotency_key is None:
            raise
        existing = _existing(engine, idempotency_key, request_hash)
        if existing is None:
            raise
        return {**existing, "replayed": True}
    enqueue(engine, celery_app, job_id, stages, counted=True, carry=Carry.first(job, body))
    return {**job, "replayed": False}


def _store(engine: Engine, job_id: str, kind: str, data_type: str, source: str | None,
           stages: Sequence[str], options: dict[str, Any], records_count: int,
           idempotency_key: str | None, request_hash: str | None, data: Any,
           as_records: bool, chunk_records: int) -> tuple[dict[str, Any], bytes | None]:
    with engine.begin() as conn:
        return _insert_job(conn, job_id, kind, data_type, source, stages, options,
                           records_count, idempotency_key, request_hash, data, as_records,
                           chunk_records)


def _insert_job(conn: Connection, job_id: str, kind: str, data_type: str, source: str | None,
                stages: Sequence[str], options: dict[str, Any], records_count: int,
                idempotency_key: str | None, request_hash: str | None, data: Any,
                as_records: bool, chunk_records: int) -> tuple[dict[str, Any], bytes | None]:
    """The job's row and its raw batch; returns the row, and the batch's JSON text when
    it is one chunk (which may then travel with the first stage's message)."""
    create = partial(
        jobs.create, conn, job_id=job_id, kind=kind, data_type=data_type, source=source,
        stages=list(stages), options=options, records_count=records_count,
        idempotency_key=idempotency_key, request_hash=request_hash, enqueue_count=1)
    records = data["records"] if as_records else None
    if records is not None and len(records) > chunk_records:
        job = create()
        payloads.save(conn, job_id, payloads.RAW, records, chunk=chunk_records)
        return job, None
    # One chunk of records, or a platform's whole response: kept as it came (the ingest
    # stage's adapter unpacks a response). A small one goes in with the job's row.
    body = payloads.encode(records if records is not None else data)
    if len(body) <= CARRY_BYTES:
        return create(raw_chunk=(payloads.RAW, records_count, body)), body
    job = create()
    payloads.save_encoded(conn, job_id, payloads.RAW, 0, records_count, body)
    return job, body


def enqueue(engine: Engine, celery_app: Celery, job_id: str, stages: Sequence[str],
            counted: bool = False, conn: Connection | None = None,
            carry: Carry | None = None) -> bool:
    """Send the chain of `stages` for the job; False (and logged) when the broker refuses.

    `counted`: the job row already counts this sending (set when it was created, to save
    a commit on the hot path); it is taken back if the broker refuses. `conn`: count it in
    the caller's transaction (which holds the job row) rather than in one of its own.
    `carry`: the first stage's input travels with its message (tasks/carry.py).
    """
    signatures = [
        celery_app.signature(TASK_NAMES[stage], args=(job_id,), immutable=True)
        for stage in stages
    ]
    if carry is not None:
        message = carry.to_message()
        signatures[0] = celery_app.signature(
            TASK_NAMES[stages[0]], args=(job_id,), kwargs={"carry": message}, immutable=True,
            kwargsrepr=describe(message))
    try:
        chain(*signatures, app=celery_app).apply_async()
    except Exception as exc:  # the job is durable; the recovery sweep will send it again
        log.warning("job %s accepted but not enqueued (broker: %s); the sweep will retry",
                    job_id, exc)
        if counted:
            _count_sending(engine, conn, job_id, -1)
        return False
    if not counted:
        _count_sending(engine, conn, job_id, 1)
    return True


def _count_sending(engine: Engine, conn: Connection | None, job_id: str, delta: int) -> None:
    if conn is not None:
        jobs.mark_enqueued(conn, job_id, delta)
        return
    with engine.begin() as own:
        jobs.mark_enqueued(own, job_id, delta)


class TooManyRecords(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} records in one upload; the limit is {limit}")
        self.limit = limit


def accept_chunks(
    engine: Engine,
    celery_app: Celery,
    *,
    chunks: Iterator[list[dict[str, Any]]],
    data_type: str,
    source: str | None,
    max_records: int,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Accept a streamed upload: chunks are stored as they arrive, in the same transaction
    as the job row, so memory holds one chunk and a broken upload leaves nothing behind."""
    job_id = str(uuid.uuid4())
    count = 0
    with engine.begin() as conn:
        jobs.create(
            conn, job_id=job_id, kind="pipeline", data_type=data_type, source=source,
            stages=list(PIPELINE_STAGES), records_count=0,
            options={**(options or {}), "raw_format": "records"}, enqueue_count=1,
        )
        seq = 0
        for chunk in chunks:
            count += len(chunk)
            if count > max_records:
                raise TooManyRecords(max_records)
            payloads.save_encoded(conn, job_id, payloads.RAW, seq, len(chunk),
                                  payloads.encode(chunk))
            seq += 1
        if seq == 0:
            payloads.save_encoded(conn, job_id, payloads.RAW, 0, 0, b"[]")
        jobs.set_records_count(conn, job_id, count)
        job = jobs.get(conn, job_id)
    assert job is not None
    enqueue(engine, celery_app, job_id, PIPELINE_STAGES, counted=True)
    return {**job, "replayed": False}


class NothingToReplay(ValueError):
    """Every quarantined record of the job was replayed already (or there were none)."""

    def __init__(self, job_id: str, replayed_by: list[str]) -> None:
        where = f" by job(s) {', '.join(replayed_by)}" if replayed_by else ""
        super().__init__(f"job {job_id} has no quarantined records left to replay"
                         f"{(' (replayed' + where + ')') if where else ''}")
        self.replayed_by = replayed_by


def replay(
    engine: Engine, celery_app: Celery, job_id: str, records: list[dict[str, Any]],
    chunk_records: int = payloads.DEFAULT_CHUNK,
) -> dict[str, Any]:
    """Send corrected versions of a job's quarantined records through the whole pipeline.

    One transaction creates the new job and marks the quarantined records as replayed by
    it, under a lock on the original job: a second replay of the same records is refused,
    so nothing is stored twice, and the originals stay listed with who replayed them.
    """
    new_id = str(uuid.uuid4())
    with engine.begin() as conn:
        original = jobs.get(conn, job_id, for_update=True)
        if original is None:
            raise LookupError(job_id)
        if quarantine.count_pending(conn, job_id) == 0:
            raise NothingToReplay(job_id, quarantine.replayed_by(conn, job_id))
        options = {k: v for k, v in original["options"].items() if k != "raw_format"}
        job, body = _insert_job(
            conn, new_id, "pipeline", original["data_type"], original["source"],
            PIPELINE_STAGES, {**options, "raw_format": "records", "replay_of": job_id},
            len(records), None, None, {"records": records}, True, chunk_records,
        )
        quarantine.mark_replayed(conn, job_id, new_id)
    enqueue(engine, celery_app, new_id, PIPELINE_STAGES, counted=True,
            carry=Carry.first(job, body))
    return {**job, "replayed": False}
