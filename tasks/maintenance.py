"""The recovery sweep: jobs that stayed queued or running too long are sent again.

The raw batch and every finished stage's output are in PostgreSQL, so a job whose
messages were lost (a Redis restart, a flushed broker) resumes at its first unfinished
stage. Stages are idempotent, so a job that was merely slow is not harmed.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import current_app, shared_task
from sqlalchemy import select

from tasks.runner import DEFAULT_STALE_SECONDS
from tasks.storage import db, jobs
from tasks.storage.schema import jobs_table
from tasks.submit import enqueue

log = logging.getLogger(__name__)


def stale_jobs(older_than_seconds: float, limit: int = 500) -> list[dict[str, Any]]:
    cutoff = jobs.utcnow() - timedelta(seconds=older_than_seconds)
    query = (
        select(jobs_table.c.id, jobs_table.c.stages)
        .where(jobs_table.c.status.in_([jobs.QUEUED, jobs.RUNNING]),
               jobs_table.c.updated_at < cutoff)
        .order_by(jobs_table.c.updated_at)
        .limit(limit)
    )
    with db.get_engine().connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def recover(celery_app: Any, older_than_seconds: float) -> list[str]:
    """Re-enqueue the unfinished stages of every stale job; returns their ids."""
    engine = db.get_engine()
    recovered = []
    for job in stale_jobs(older_than_seconds):
        remaining = [s["name"] for s in job["stages"] if s["status"] != jobs.SUCCEEDED]
        if remaining and enqueue(engine, celery_app, job["id"], remaining):
            recovered.append(job["id"])
    if recovered:
        log.warning("recovery sweep re-enqueued %d stale job(s): %s",
                    len(recovered), ", ".join(recovered))
    return recovered


@shared_task(name="maintenance.recover_stale_jobs", ignore_result=True)
def recover_stale_jobs() -> int:
    seconds = float(current_app.conf.get("pipeline_stale_job_seconds") or DEFAULT_STALE_SECONDS)
    return len(recover(current_app, seconds))
