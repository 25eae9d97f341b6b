"""A long poll (GET /api/v1/jobs/<id>?wait=...) is woken by the NOTIFY of the transaction
that finishes the job, not by its periodic re-check."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import text

from tasks.runner import run_stage
from tasks.storage import jobs
from tasks.storage.tasks import store_step
from tests.helpers import close_job, stored_job
from webapp.views import jobs as jobs_view

pytestmark = pytest.mark.usefixtures("clean_tables")


def test_the_job_finishing_wakes_its_long_poll(client, engine, monkeypatch):
    monkeypatch.setattr(jobs_view, "RECHECK_SECONDS", 60.0)  # only the notice can wake it
    job_id = stored_job(engine, [{"campaign_id": "poll-1", "date": "2025-03-01",
                                  "spend": "1"}], ["store"])
    answer: dict[str, Any] = {}
    poll = threading.Thread(target=lambda: answer.update(
        client.get(f"/api/v1/jobs/{job_id}?wait=20").get_json()))
    poll.start()
    time.sleep(0.5)  # the poll has read the job (queued) and waits
    assert poll.is_alive()
    run_stage(job_id, "store", store_step)
    poll.join(15)  # well before its 20 s are up
    assert not poll.is_alive()
    assert answer["status"] == "succeeded"


def _notices(listener) -> list[str]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 0.3
    payloads: list[str] = []
    while time.monotonic() < deadline:
        listener.poll()
        payloads += [n.payload for n in listener.notifies]
        listener.notifies.clear()
        time.sleep(0.02)
    return payloads


def test_the_database_announces_a_job_finishing_whatever_finishes_it(engine):
    job_id = stored_job(engine, [{"campaign_id": "poll-2"}], ["store"])
    other_id = stored_job(engine, [{"campaign_id": "poll-3"}], ["store"])
    raw = engine.raw_connection()
    raw.detach()  # its own connection: a LISTEN must not go back to the pool
    listener = raw.dbapi_connection
    listener.autocommit = True

    def set_status(status: str, job: str) -> None:  # as any code path might
        with engine.begin() as conn:
            conn.execute(text("UPDATE pipeline_jobs SET status = :s WHERE id = :j"),
                         {"s": status, "j": job})

    try:
        with listener.cursor() as cursor:
            cursor.execute(f"LISTEN {jobs.JOB_DONE_CHANNEL}")  # a constant name
        with engine.begin() as conn:  # a claim and a heartbeat are no finish
            jobs.write_claim(conn, jobs.claim_stage(conn, job_id, "store", "me", 60.0,
                                                    write=False))
            assert jobs.heartbeat(conn, job_id, "store", 1)
        assert _notices(listener) == []
        with engine.begin() as conn:
            jobs.fail(conn, job_id, "store", "broken", "a test failure")
        assert _notices(listener) == [job_id]
        set_status("failed", job_id)  # already failed: no new finish
        assert _notices(listener) == []
        set_status("succeeded", other_id)  # straight from queued, by a plain UPDATE
        assert _notices(listener) == [other_id]
    finally:
        listener.close()
        close_job(engine, other_id)


def test_long_polls_past_the_cap_answer_at_once_leaving_threads_for_other_requests(
        client, engine, monkeypatch):
    """An API process holds a few long polls at once; one more gets the job as it is (a
    Retry-After: 1 says to ask again), instead of a thread that health checks and new
    batches need."""
    monkeypatch.setattr(jobs_view, "_long_polls", threading.BoundedSemaphore(2))
    job_id = stored_job(engine, [{"campaign_id": "poll-cap"}], ["store"])
    held = [threading.Thread(target=client.get, args=(f"/api/v1/jobs/{job_id}?wait=3",))
            for _ in range(2)]
    for poll in held:
        poll.start()
    time.sleep(0.5)  # both hold their place
    started = time.monotonic()
    response = client.get(f"/api/v1/jobs/{job_id}?wait=3")
    assert time.monotonic() - started < 1.5
    assert response.status_code == 200 and response.headers["Retry-After"] == "1"
    assert response.get_json()["status"] == "queued"
    for poll in held:
        poll.join(10)
    close_job(engine, job_id)
    released = client.get(f"/api/v1/jobs/{job_id}?wait=3")
    assert "Retry-After" not in released.headers and released.get_json()["status"] == "failed"
