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


def _resend(engine: Any, celery_app: Any, job_id: str, older_than_seconds: float) -> bool:
    """Send the job's unfinished stages again, unless its row is locked: a stage of one
    chunk runs with the row locked from its claim to its commit, so that job is at work,
    not lost (and waiting for it would hold up the recovery of every other job)."""
    cutoff = jobs.utcnow() - timedelta(seconds=older_than_seconds)
    with engine.begin() as conn:
        row = conn.execute(
            select(jobs_table.c.stages)
            .where(jobs_table.c.id == job_id,
                   jobs_table.c.status.in_([jobs.QUEUED, jobs.RUNNING]),
                   jobs_table.c.updated_at < cutoff)
            .with_for_update(key_share=True, skip_locked=True)
        ).first()
        if row is None:
            return False
        remaining = [s["name"] for s in row.stages if s["status"] != jobs.SUCCEEDED]
        return bool(remaining) and enqueue(engine, celery_app, job_id, remaining, conn=conn)


def recover(celery_app: Any, older_than_seconds: float) -> list[str]:
    """Re-enqueue the unfinished stages of every stale job; returns their ids."""
    engine = db.get_engine()
    recovered = []
    for job in stale_jobs(older_than_seconds):
        if _resend(engine, celery_app, job["id"], older_than_seconds):
            recovered.append(job["id"])
    if recovered:
        log.warning("recovery sweep re-enqueued %d stale job(s): %s",
                    len(recovered), ", ".join(recovered))
    return recovered


@shared_task(name="maintenance.recover_stale_jobs", ignore_result=True)
def recover_stale_jobs() -> int:
    seconds = float(current_app.conf.get("pipeline_stale_job_seconds") or DEFAULT_STALE_SECONDS)
    return len(recover(current_app, seconds))
