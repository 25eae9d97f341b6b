"""The Python API: submit a batch to the pipeline and wait for its job, without HTTP.

    from tasks import run_pipeline
    job = run_pipeline([{"campaign_id": "123", "spend": 100.0}],
                       data_type="campaign_performance", source="meta_ads")

The same durable path as the HTTP API: job row and raw batch committed, then the chain
sent to the workers. Settings come from the environment (DATABASE_URL, CELERY_BROKER_URL).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from celery import Celery
from sqlalchemy.engine import Engine

from tasks.celery_app import PIPELINE_STAGES, make_celery
from tasks.datatypes import get_data_type
from tasks.ingestion.adapters import get_adapter
from tasks.ingestion.core import count_rows
from tasks.ingestion.files import iter_file_records
from tasks.processing.options import check_processing_options
from tasks.settings import Settings
from tasks.storage import db, jobs
from tasks.storage.core import check_options
from tasks.submit import accept, accept_chunks
from tasks.validation.core import compile_rules


class JobFailed(RuntimeError):
    def __init__(self, job: Mapping[str, Any]) -> None:
        error = job.get("error") or {}
        super().__init__(f"job {job['job_id']} failed: {error.get('code')}: {error.get('message')}")
        self.job = job


@lru_cache(maxsize=4)
def _runtime(settings: Settings) -> tuple[Engine, Celery]:
    settings.require_services()
    celery_app = make_celery(settings)
    return db.get_engine(), celery_app


def submit_pipeline(
    records: Sequence[Mapping[str, Any]] | None = None,
    *,
    data_type: str,
    source: str | None = None,
    data: Any = None,
    validation_rules: Mapping[str, Any] | None = None,
    processing_options: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    stages: Sequence[str] = PIPELINE_STAGES,
    settings: Settings | None = None,
) -> str:
    """Accept a batch (canonical `records`, or a platform's native `data`); returns the job id."""
    settings = settings or Settings.from_env()
    engine, celery_app = _runtime(settings)
    declaration = get_data_type(data_type)
    # The same checks as the HTTP API, so a bad option fails here, not in a worker.
    compile_rules(declaration, validation_rules)
    check_processing_options(declaration, processing_options)
    check_options(declaration, storage_options)
    payload = {"records": list(records)} if data is None else data
    count = count_rows(payload, source, data_type)
    options = {
        key: dict(value)
        for key, value in (
            ("validation_rules", validation_rules),
            ("processing_options", processing_options),
            ("storage_options", storage_options),
        )
        if value is not None
    }
    job = accept(
        engine, celery_app, kind="pipeline" if tuple(stages) == PIPELINE_STAGES else stages[0],
        stages=stages, data_type=data_type, source=source, data=payload, records_count=count,
        options=options, chunk_records=settings.chunk_records,
    )
    return job["id"]


FILE_SUFFIXES = {".csv": "csv", ".ndjson": "ndjson", ".jsonl": "jsonl"}


def submit_file(
    path: str | os.PathLike[str],
    *,
    data_type: str,
    source: str | None = None,
    file_format: str | None = None,
    settings: Settings | None = None,
) -> str:
    """Accept a local CSV or NDJSON file, read a chunk at a time; returns the job id."""
    settings = settings or Settings.from_env()
    engine, celery_app = _runtime(settings)
    get_data_type(data_type)
    get_adapter(source, data_type)
    fmt = file_format or FILE_SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the format of {path}: pass file_format='csv' or 'ndjson'")
    with open(path, "rb") as stream:
        job = accept_chunks(
            engine, celery_app, chunks=iter_file_records(stream, fmt, settings.chunk_records),
            data_type=data_type, source=source, max_records=settings.max_file_records,
        )
    return job["id"]


def get_job(job_id: str, settings: Settings | None = None) -> dict[str, Any] | None:
    engine, _ = _runtime(settings or Settings.from_env())
    with engine.connect() as conn:
        row = jobs.get(conn, job_id)
    return jobs.to_public(row) if row else None


def wait_for_job(
    job_id: str, timeout: float = 60.0, settings: Settings | None = None,
    raise_on_failure: bool = True,
) -> dict[str, Any]:
    """Poll the job row until it finishes; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        job = get_job(job_id, settings)
        if job is None:
            raise LookupError(f"no job {job_id}")
        if job["status"] in jobs.FINISHED:
            if job["status"] == jobs.FAILED and raise_on_failure:
                raise JobFailed(job)
            return job
        if time.monotonic() >= deadline:
            raise TimeoutError(f"job {job_id} still {job['status']} after {timeout}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def run_pipeline(
    records: Sequence[Mapping[str, Any]] | None = None,
    *,
    data_type: str,
    source: str | None = None,
    timeout: float = 60.0,
    **kwargs: Any,
) -> dict[str, Any]:
    """Submit a batch and wait for its job; returns the finished job (JobFailed if it failed)."""
    settings = kwargs.pop("settings", None)
    job_id = submit_pipeline(records, data_type=data_type, source=source, settings=settings,
                             **kwargs)
    return wait_for_job(job_id, timeout=timeout, settings=settings)
