"""Celery task of the ingest stage."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from sqlalchemy.engine import Connection

from tasks.chunks import StageInput, StageSink
from tasks.ingestion.adapters import get_adapter
from tasks.ingestion.core import ingest
from tasks.runner import STAGE_TASK_OPTIONS, run_celery_stage
from tasks.stage import StageOutput


def ingest_step(conn: Connection, job: dict[str, Any], source: StageInput,
                sink: StageSink) -> StageOutput:
    # The raw batch is stored as its records in chunks, or as the platform's whole response.
    as_records = job["options"].get("raw_format", "records") == "records"
    # The validate stage after this one converts types; doing it here too is waste.
    coerce = "validate" not in [s["name"] for s in job["stages"]]
    # A source whose records already carry canonical names passes them on as they came,
    # only the job's source set where a record has none (as `ingest` does): stored as a
    # reference to the raw chunk rather than again.
    passed = (as_records and not coerce and
              get_adapter(job["source"], job["data_type"]).rows_pass_through)
    fill = {"source": job["source"]} if passed and job["source"] else None
    for offset, chunk in source.chunks():
        sink.take(ingest({"records": chunk} if as_records else chunk, job["source"],
                         job["data_type"], job["options"].get("ingestion_options"),
                         coerce=coerce),
                  offset, passed_from=source if passed else None, fill=fill)
    return sink.summary()


@shared_task(name="ingestion.ingest", **STAGE_TASK_OPTIONS)
def ingest_task(self: Any, job_id: str,
                carry: dict[str, Any] | None = None) -> dict[str, Any]:
    return run_celery_stage(self, job_id, "ingest", ingest_step, carry)
