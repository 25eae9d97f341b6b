"""/api/v1/jobs: a job's status, stages and results, and its quarantined records."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from flask import Blueprint, current_app, request, url_for

from tasks.storage import db, jobs, quarantine
from tasks.submit import NothingToReplay, replay
from webapp.auth import require_api_key
from webapp.errors import ApiError
from webapp.job_events import RECHECK_SECONDS, watcher_for
from webapp.jsonio import load_body
from webapp.schemas import ReplayRequest

bp = Blueprint("jobs", __name__, url_prefix="/api/v1/jobs")
bp.before_request(require_api_key)

MAX_WAIT_SECONDS = 30.0
# Long polls held at once by one API process; the others answer at once (the job as it
# is, with Retry-After). An API process has 8 threads (stack/launcher.py): waiting clients
# must not take them all, or health checks and new batches queue behind them.
LONG_POLLS_AT_ONCE = 6
_long_polls = threading.BoundedSemaphore(LONG_POLLS_AT_ONCE)
MAX_PAGE = 1000


def _job_id(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ApiError(404, f"no job {raw!r}", details={"job_id": raw}) from None


def _load(job_id: str) -> dict[str, Any]:
    with db.autocommit_engine().connect() as conn:
        job = jobs.get(conn, job_id)
    if job is None:
        raise ApiError(404, f"no job {job_id}", details={"job_id": job_id})
    return job


def _query_number(name: str, default: float, minimum: float, maximum: float) -> float:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(422, f"{name} must be a number", details={"field": name}) from None
    if not minimum <= value <= maximum:
        raise ApiError(422, f"{name} must be between {minimum:g} and {maximum:g}",
                       details={"field": name})
    return value


@bp.get("/<job_id>")
def get_job(job_id: str):  # type: ignore[no-untyped-def]
    """The job; with ?wait=SECONDS, hold the request until it finishes or the time is up."""
    job_id = _job_id(job_id)
    wait = _query_number("wait", 0.0, 0.0, MAX_WAIT_SECONDS)
    if wait <= 0:
        return {"success": True, **jobs.to_public(_load(job_id))}
    if not _long_polls.acquire(blocking=False):
        return {"success": True, **jobs.to_public(_load(job_id))}, 200, {"Retry-After": "1"}
    try:
        return _wait_for(job_id, wait)
    finally:
        _long_polls.release()


def _wait_for(job_id: str, wait: float) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    # Registered before the first read, so a job finishing in between still wakes us.
    with watcher_for(db.get_engine()).watch(job_id) as finished:
        job = _load(job_id)
        while job["status"] not in jobs.FINISHED:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            finished.wait(min(remaining, RECHECK_SECONDS))
            finished.clear()
            job = _load(job_id)
    return {"success": True, **jobs.to_public(job)}


@bp.get("/<job_id>/rejected")
def rejected(job_id: str):  # type: ignore[no-untyped-def]
    """Quarantined records of a job with their reasons, oldest first."""
    job_id = _job_id(job_id)
    _load(job_id)
    limit = int(_query_number("limit", 100, 1, MAX_PAGE))
    offset = int(_query_number("offset", 0, 0, 2**31))
    with db.get_engine().connect() as conn:
        total = quarantine.count(conn, job_id)
        rows = quarantine.page(conn, job_id, limit, offset)
    next_offset = offset + len(rows) if offset + len(rows) < total else None
    return {
        "success": True, "job_id": job_id, "records": rows, "records_count": len(rows),
        "total_count": total, "limit": limit, "offset": offset, "next_offset": next_offset,
    }


@bp.post("/<job_id>/rejected/replay")
def replay_rejected(job_id: str):  # type: ignore[no-untyped-def]
    """Send corrected versions of the job's quarantined records through the pipeline."""
    job_id = _job_id(job_id)
    _load(job_id)
    body = load_body(ReplayRequest())
    records = body["records"]
    if not records:
        raise ApiError(422, "records must hold the corrected records",
                       details={"field": "records"})
    limit = current_app.config["MAX_RECORDS"]
    if len(records) > limit:
        raise ApiError(413, f"{len(records)} records in one request; the limit is {limit}",
                       details={"limit": limit})
    try:
        job = replay(db.get_engine(), current_app.extensions["celery"], job_id, records,
                     chunk_records=current_app.config["CHUNK_RECORDS"])
    except NothingToReplay as exc:
        raise ApiError(409, str(exc), details={"replayed_by": exc.replayed_by}) from None
    status_url = url_for("jobs.get_job", job_id=job["id"])
    return {
        "success": True, "job_id": job["id"], "status": job["status"], "status_url": status_url,
        "replay_of": job_id, "data_type": job["data_type"], "source": job["source"],
        "result": {"records_count": len(records), "status": job["status"]},
    }, 202, {"Location": status_url}
