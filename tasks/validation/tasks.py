"""Celery task of the validate stage: the batch checked a chunk at a time."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from sqlalchemy.engine import Connection

from tasks.chunks import StageInput, StageSink
from tasks.datatypes import get_data_type
from tasks.runner import STAGE_TASK_OPTIONS, run_celery_stage
from tasks.stage import StageFailure, StageOutput
from tasks.storage import payloads
from tasks.storage.repeats import RepeatedKeys
from tasks.time_budget import OverBudget, time_budget
from tasks.validation.core import Validation, rejection_message

# A chunk's check takes well under a second; past this a rule is the problem (a regex),
# and the job fails saying so instead of holding a worker until the task's time limit.
CHUNK_SECONDS = 30.0


def validate_step(conn: Connection, job: dict[str, Any], source: StageInput,
                  sink: StageSink) -> StageOutput:
    validation = Validation(get_data_type(job["data_type"]),
                            job["options"].get("validation_rules"))
    # A key repeated in two chunks fails a unique rule as it would within one chunk: a
    # first pass gives every unique rule's keys.
    repeats = RepeatedKeys.in_batch(
        conn, "unique", source,
        lambda chunk: ((rule, i, key) for rule, keyed in validation.keys(chunk).items()
                       for i, key in keyed),
    ) if validation.has_unique and source.spans_chunks else None
    for offset, chunk in source.chunks():
        if not isinstance(chunk, list):
            raise StageFailure("invalid_payload", "the validate stage takes a list of records")
        repeated = (repeats.within(offset, offset + len(chunk)) if repeats is not None
                    else None)
        try:
            with time_budget(CHUNK_SECONDS):
                _converted, rejected = validation.check(chunk, offset, repeated)
        except OverBudget:
            raise StageFailure(
                "validation_too_slow",
                f"checking {len(chunk)} records took more than {CHUNK_SECONDS:g} s (it "
                f"takes well under a second): a regex rule whose pattern backtracks "
                f"catastrophically, as nested repeats like (a+)+ do, is the usual cause",
                details={"records": len(chunk), "seconds": CHUNK_SECONDS}) from None
        # What goes on is the chunk as it came, less what was refused: the stages after
        # this one convert types anyway, and so the output is stored as a reference to
        # the chunk rather than again.
        dropped = [r.index for r in rejected]
        sink.pass_on(source, payloads.without_positions(chunk, dropped), dropped)
        sink.reject(rejected, offset)
    result = validation.result()
    message = rejection_message(result)
    # on_invalid reject_batch, and validation did not pass: the job fails, and the records
    # quarantined so far stay with their reasons.
    failure = StageFailure("validation_failed", message, result=result) if message else None
    return StageOutput(records=[], result=result, records_in=validation.size, failure=failure)


@shared_task(name="validation.validate", **STAGE_TASK_OPTIONS)
def validate_task(self: Any, job_id: str,
                  carry: dict[str, Any] | None = None) -> dict[str, Any]:
    return run_celery_stage(self, job_id, "validate", validate_step, carry)
