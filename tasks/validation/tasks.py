"""Celery task of the validate stage."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from sqlalchemy.engine import Connection

from tasks.datatypes import get_data_type
from tasks.runner import STAGE_TASK_OPTIONS, run_celery_stage
from tasks.stage import StageFailure, StageOutput
from tasks.validation.core import rejection_message, validate


def validate_step(conn: Connection, job: dict[str, Any], payload: Any) -> StageOutput:
    output = validate(payload, get_data_type(job["data_type"]),
                      job["options"].get("validation_rules"))
    message = rejection_message(output)
    if message:  # on_invalid reject_batch, and validation did not pass
        raise StageFailure("validation_failed", message, result=output.result,
                           rejected=output.rejected)
    return output


@shared_task(name="validation.validate", **STAGE_TASK_OPTIONS)
def validate_task(self: Any, job_id: str) -> dict[str, Any]:
    return run_celery_stage(self, job_id, "validate", validate_step)
