"""Celery task of the validate stage."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from sqlalchemy.engine import Connection

from tasks.datatypes import get_data_type
from tasks.runner import STAGE_TASK_OPTIONS, run_celery_stage
from tasks.stage import StageFailure, StageOutput
from tasks.validation.core import REJECT_BATCH, validate


def validate_step(conn: Connection, job: dict[str, Any], payload: Any) -> StageOutput:
    output = validate(payload, get_data_type(job["data_type"]),
                      job["options"].get("validation_rules"))
    if output.rejected and output.result.get("on_invalid") == REJECT_BATCH:
        raise StageFailure(
            "validation_failed",
            f"{len(output.rejected)} of {output.records_in} records are invalid and "
            "on_invalid is reject_batch: nothing was stored",
            result=output.result, rejected=output.rejected,
        )
    return output


@shared_task(name="validation.validate", **STAGE_TASK_OPTIONS)
def validate_task(self: Any, job_id: str) -> dict[str, Any]:
    return run_celery_stage(self, job_id, "validate", validate_step)
