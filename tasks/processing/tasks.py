"""Celery task of the process stage."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from sqlalchemy.engine import Connection

from tasks.datatypes import get_data_type
from tasks.processing.core import process
from tasks.runner import STAGE_TASK_OPTIONS, run_celery_stage
from tasks.stage import StageOutput


def process_step(conn: Connection, job: dict[str, Any], payload: Any) -> StageOutput:
    return process(payload, get_data_type(job["data_type"]),
                   job["options"].get("processing_options"))


@shared_task(name="processing.process", **STAGE_TASK_OPTIONS)
def process_task(self: Any, job_id: str) -> dict[str, Any]:
    return run_celery_stage(self, job_id, "process", process_step)
