"""Celery task of the store stage."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from sqlalchemy.engine import Connection

from tasks import progress
from tasks.chunks import StageInput, StageSink
from tasks.datatypes import get_data_type
from tasks.runner import STAGE_TASK_OPTIONS, run_celery_stage
from tasks.stage import StageFailure, StageOutput
from tasks.storage import jobs
from tasks.storage.core import every_natural_key, store, store_chunk
from tasks.storage.quarantine import Rejected
from tasks.storage.repeats import RepeatedKeys


def store_step(conn: Connection, job: dict[str, Any], source: StageInput,
               sink: StageSink) -> StageOutput:
    """Each chunk is upserted in turn, in the stage's one transaction; of a key repeated
    across chunks only the batch's last record is written (and the others counted as
    duplicates)."""
    # Records from our own process stage are canonical: no second conversion.
    if jobs.input_name(job, "store") == "process":
        return _store_canonical(conn, job, source, sink)
    data_type = get_data_type(job["data_type"])
    # Input spanning chunks needs a first pass for keys repeated across them.
    repeats = RepeatedKeys.in_batch(
        conn, "natural_key", source,
        lambda chunk: ((0, i, key) for i, key in every_natural_key(chunk, data_type)),
    ) if source.spans_chunks else None
    for offset, chunk in source.chunks():
        superseded = (repeats.superseded(offset, offset + len(chunk)) if repeats is not None
                      else set())
        try:
            output = store(conn, chunk, data_type, job["options"].get("storage_options"),
                           job_id=job["id"], accepted_at=job["created_at"],
                           superseded=superseded)
        except StageFailure as failure:
            # Nothing of the batch is stored (the transaction rolls back, with what earlier
            # chunks quarantined); this chunk's refused records are kept, by position.
            failure.rejected = [Rejected(r.index + offset, r.record, r.reasons)
                                for r in failure.rejected]
            raise
        sink.take(output, offset)
    return sink.summary()


def _store_canonical(conn: Connection, job: dict[str, Any], source: StageInput,
                     sink: StageSink) -> StageOutput:
    """Our process stage's output, chunk by chunk, read by PostgreSQL from the claim
    check: its values are canonical and it holds one record per key across the batch."""
    data_type = get_data_type(job["data_type"])
    offset = 0
    held = source.held_chunk()
    for seq, count in source.stored():  # at least one: an empty output is stored as []
        progress.enter_chunk(offset)
        output = store_chunk(conn, data_type, job["options"].get("storage_options"),
                             job_id=job["id"], payload=source.name, seq=seq,
                             accepted_at=job["created_at"],
                             body=held[1] if held is not None and held[0] == seq else None,
                             expected=count)
        sink.take(output, offset)
        offset += count
    return sink.summary()


@shared_task(name="storage.store", **STAGE_TASK_OPTIONS)
def store_task(self: Any, job_id: str,
               carry: dict[str, Any] | None = None) -> dict[str, Any]:
    return run_celery_stage(self, job_id, "store", store_step, carry)
