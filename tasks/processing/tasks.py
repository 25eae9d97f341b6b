"""Celery task of the process stage: the pure core, a chunk at a time, with database
lookups on the stage's connection."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from sqlalchemy.engine import Connection

from tasks.chunks import StageInput, StageSink
from tasks.datatypes import get_data_type
from tasks.processing.core import natural_keys, process
from tasks.processing.lookups import DbLookups
from tasks.processing.options import ProcessingOptionError, check_processing_options
from tasks.runner import STAGE_TASK_OPTIONS, run_celery_stage
from tasks.stage import StageFailure, StageOutput
from tasks.storage.repeats import RepeatedKeys


def process_step(conn: Connection, job: dict[str, Any], source: StageInput,
                 sink: StageSink) -> StageOutput:
    data_type = get_data_type(job["data_type"])
    try:
        # The API checks options before accepting; a job sent another way is checked here.
        options = check_processing_options(data_type, job["options"].get("processing_options"))
    except ProcessingOptionError as exc:
        raise StageFailure("invalid_processing_options", str(exc), exc.details) from None
    # Dedup (the last record of a key wins) holds over the whole batch, not only within
    # each chunk: a first pass finds the keys repeated across chunks.
    repeats = RepeatedKeys.in_batch(
        conn, "natural_key", source,
        lambda chunk: ((0, i, key) for i, key in natural_keys(chunk, data_type)),
    ) if source.spans_chunks else None
    lookups = DbLookups(conn)
    for offset, chunk in source.chunks():
        if not isinstance(chunk, list):
            raise StageFailure("invalid_payload", "the process stage takes a list of records")
        superseded = (repeats.superseded(offset, offset + len(chunk)) if repeats is not None
                      else set())
        # The chunk was read for this step alone: convert its records in place.
        sink.take(process(chunk, data_type, options, lookups, in_place=True,
                          superseded=superseded), offset)
    return sink.summary()


@shared_task(name="processing.process", **STAGE_TASK_OPTIONS)
def process_task(self: Any, job_id: str,
                 carry: dict[str, Any] | None = None) -> dict[str, Any]:
    return run_celery_stage(self, job_id, "process", process_step, carry)
