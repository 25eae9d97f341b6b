"""The pipeline's stages as Celery tasks, and a Python API to run them.

Stage cores are plain functions (tasks.ingestion.core.ingest, tasks.validation.core.validate,
tasks.processing.core.process, tasks.storage.core.store) usable with no broker at all.
"""

from tasks.client import (
    JobFailed,
    get_job,
    run_pipeline,
    submit_file,
    submit_pipeline,
    wait_for_job,
)

__all__ = [
    "JobFailed", "get_job", "run_pipeline", "submit_file", "submit_pipeline", "wait_for_job",
]
