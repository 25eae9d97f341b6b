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
