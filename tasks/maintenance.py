"""Periodic upkeep, run by Celery beat in one worker.

The recovery sweep: jobs that stayed queued or running too long are sent again. The raw
batch and every finished stage's output are in PostgreSQL, so a job whose messages were
lost (a Redis restart, a flushed broker) resumes at its first unfinished stage. Stages
are idempotent, so a job that was merely slow is not harmed.

Raw batch retention: a finished job's raw batch is deleted once the job has been
finished for RAW_RETENTION_HOURS. Nothing reads it then (a replay carries its own
records), and kept for ever every upload would stay on disk.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import current_app, shared_task
from sqlalchemy import delete, select

from tasks.runner import DEFAULT_STALE_SECONDS
from tasks.storage import db, jobs, payloads
from tasks.storage.schema import jobs_table, payloads_table
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


# Jobs whose payloads one transaction deletes: a few short transactions rather than one
# that holds thousands of rows' locks.
EXPIRE_JOBS_PER_TRANSACTION = 100
EXPIRE_TRANSACTIONS_PER_RUN = 20


def expire_raw_batches(older_than_hours: float) -> int:
    """Delete what is stored of jobs finished more than `older_than_hours` ago (their raw
    batch, and any output a crash left behind); returns how many jobs lost theirs. Driven
    by the stored batches, so its cost follows what is kept, not how many jobs exist."""
    cutoff = jobs.utcnow() - timedelta(hours=older_than_hours)
    engine = db.get_engine()
    expired = 0
    stored = payloads_table.c
    batches = (
        select(stored.job_id)
        .join(jobs_table, jobs_table.c.id == stored.job_id)
        .where(stored.name == payloads.RAW, stored.seq == 0,
               jobs_table.c.status.in_(jobs.FINISHED), jobs_table.c.updated_at < cutoff)
        .limit(EXPIRE_JOBS_PER_TRANSACTION)
    )
    statement = (delete(payloads_table).where(stored.job_id.in_(batches.scalar_subquery()))
                 .returning(stored.job_id))
    for _ in range(EXPIRE_TRANSACTIONS_PER_RUN):
        with engine.begin() as conn:
            ids = set(conn.execute(statement).scalars())
        expired += len(ids)
        if len(ids) < EXPIRE_JOBS_PER_TRANSACTION:
            break
    if expired:
        log.info("raw batch retention: deleted the stored batches of %d finished job(s)",
                 expired)
    return expired


@shared_task(name="maintenance.expire_raw_batches", ignore_result=True)
def expire_raw_batches_task() -> int:
    hours = current_app.conf.get("pipeline_raw_retention_hours")
    return 0 if hours is None else expire_raw_batches(float(hours))
