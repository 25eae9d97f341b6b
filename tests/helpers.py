"""Helpers shared by the integration tests."""

from __future__ import annotations

import time
from typing import Any


def wait_job(client, job_id: str, timeout: float = 30.0) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Long-poll the job until it finishes; fails the test on a time-out."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/api/v1/jobs/{job_id}?wait=5")
        assert response.status_code == 200, response.get_json()
        job = response.get_json()
        if job["status"] in ("succeeded", "failed"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}: {job}"


def stored_job(engine, data: Any, stages: list[str], options: dict[str, Any] | None = None,  # type: ignore[no-untyped-def]
               chunk: int = 20_000, data_type: str = "campaign_performance") -> str:
    """A job whose raw batch is stored (in chunks of `chunk` records, or whole when `data`
    is not a list) but not sent to the workers, so a test runs its stages itself."""
    import uuid

    from tasks.storage import jobs, payloads

    job_id = str(uuid.uuid4())
    as_records = isinstance(data, list)
    with engine.begin() as conn:
        jobs.create(conn, job_id=job_id, kind=stages[0], data_type=data_type, source=None,
                    stages=stages,
                    options={"raw_format": "records" if as_records else "response",
                             **(options or {})},
                    records_count=len(data) if as_records else 1)
        if as_records:
            payloads.save(conn, job_id, payloads.RAW, data, chunk=chunk)
        else:
            payloads.save_encoded(conn, job_id, payloads.RAW, 0, 1, payloads.encode(data))
    return job_id


def stage_output(engine, job_id: str, name: str) -> list[Any]:  # type: ignore[no-untyped-def]
    """The records a stage passed on, read back from the claim check."""
    from tasks.storage import payloads

    with engine.connect() as conn:
        return payloads.load(conn, job_id, name)


def close_job(engine, job_id: str) -> None:  # type: ignore[no-untyped-def]
    """End a job whose later stages a test does not run (other tests wait for running
    jobs to finish before they empty the tables)."""
    from tasks.storage import jobs

    with engine.begin() as conn:
        jobs.fail(conn, job_id, None, "test_over", "later stages not run by this test")
