"""Celery task of the ingest stage."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from sqlalchemy.engine import Connection

from tasks.chunks import StageInput, StageSink
from tasks.ingestion.core import ingest
from tasks.runner import STAGE_TASK_OPTIONS, run_celery_stage
from tasks.stage import StageOutput


def ingest_step(conn: Connection, job: dict[str, Any], source: StageInput,
                sink: StageSink) -> StageOutput:
    # The raw batch is stored as its records in chunks, or as the platform's whole response.
    as_records = job["options"].get("raw_format", "records") == "records"
    # The validate stage after this one converts types; doing it here too is waste.
    coerce = "validate" not in [s["name"] for s in job["stages"]]
    for offset, chunk in source.chunks():
        sink.take(ingest({"records": chunk} if as_records else chunk, job["source"],
                         job["data_type"], job["options"].get("ingestion_options"),
                         coerce=coerce), offset)
    return sink.summary()


@shared_task(name="ingestion.ingest", **STAGE_TASK_OPTIONS)
def ingest_task(self: Any, job_id: str,
                carry: dict[str, Any] | None = None) -> dict[str, Any]:
    return run_celery_stage(self, job_id, "ingest", ingest_step, carry)
