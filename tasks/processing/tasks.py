"""Celery task of the process stage: the pure core with database lookups on the stage's conn."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from sqlalchemy.engine import Connection

from tasks.datatypes import get_data_type
from tasks.processing.core import process
from tasks.processing.lookups import DbLookups
from tasks.processing.options import ProcessingOptionError, check_processing_options
from tasks.runner import STAGE_TASK_OPTIONS, run_celery_stage
from tasks.stage import StageFailure, StageOutput


def process_step(conn: Connection, job: dict[str, Any], payload: Any) -> StageOutput:
    data_type = get_data_type(job["data_type"])
    try:
        # The API checks options before accepting; a job sent another way is checked here.
        options = check_processing_options(data_type, job["options"].get("processing_options"))
    except ProcessingOptionError as exc:
        raise StageFailure("invalid_processing_options", str(exc), exc.details) from None
    if not isinstance(payload, list):
        raise StageFailure("invalid_payload", "the process stage takes a list of records")
    # The payload was loaded for this step alone: convert its records in place.
    return process(payload, data_type, options, DbLookups(conn), in_place=True)


@shared_task(name="processing.process", **STAGE_TASK_OPTIONS)
def process_task(self: Any, job_id: str) -> dict[str, Any]:
    return run_celery_stage(self, job_id, "process", process_step)
