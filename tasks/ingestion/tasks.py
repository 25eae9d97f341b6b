"""Celery task of the ingest stage."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from sqlalchemy.engine import Connection

from tasks.chunks import StageInput, StageSink, add_counts
from tasks.ingestion.core import ingest
from tasks.runner import STAGE_TASK_OPTIONS, run_celery_stage
from tasks.stage import StageOutput


def ingest_step(conn: Connection, job: dict[str, Any], source: StageInput,
                sink: StageSink) -> StageOutput:
    # The raw batch is stored as its records in chunks, or as the platform's whole response.
    as_records = job["options"].get("raw_format", "records") == "records"
    # The validate stage after this one converts types; doing it here too is waste.
    coerce = "validate" not in [s["name"] for s in job["stages"]]
    result: dict[str, Any] = {}
    records_in = 0
    for offset, chunk in source.chunks():
        output = ingest({"records": chunk} if as_records else chunk, job["source"],
                        job["data_type"], job["options"].get("ingestion_options"),
                        coerce=coerce)
        sink.write(output.records)
        sink.reject(output.rejected, offset)
        records_in += output.records_in
        add_counts(result, output.result)
    return StageOutput(records=[], result=result, records_in=records_in)


@shared_task(name="ingestion.ingest", **STAGE_TASK_OPTIONS)
def ingest_task(self: Any, job_id: str) -> dict[str, Any]:
    return run_celery_stage(self, job_id, "ingest", ingest_step)
