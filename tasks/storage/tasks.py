"""Celery task of the store stage."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from sqlalchemy.engine import Connection

from tasks.datatypes import get_data_type
from tasks.runner import STAGE_TASK_OPTIONS, run_celery_stage
from tasks.stage import StageOutput
from tasks.storage import jobs
from tasks.storage.core import store


def store_step(conn: Connection, job: dict[str, Any], payload: Any) -> StageOutput:
    # Records from our own process stage are canonical: no second conversion.
    canonical = jobs.input_name(job, "store") == "process"
    return store(conn, payload, get_data_type(job["data_type"]),
                 job["options"].get("storage_options"), job_id=job["id"],
                 accepted_at=job["created_at"], canonical=canonical)


@shared_task(name="storage.store", **STAGE_TASK_OPTIONS)
def store_task(self: Any, job_id: str) -> dict[str, Any]:
    return run_celery_stage(self, job_id, "store", store_step)
