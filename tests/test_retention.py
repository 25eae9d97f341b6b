"""Raw batch retention: a finished job's stored batch is deleted once the job has been
finished for RAW_RETENTION_HOURS; running jobs and recent ones keep theirs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from tasks import maintenance
from tasks.celery_app import celery_config
from tasks.settings import Settings, SettingsError
from tasks.storage import jobs
from tests.helpers import close_job, stage_output, stored_job

pytestmark = pytest.mark.usefixtures("clean_tables")


def _finished_hours_ago(engine, job_id: str, hours: float) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        conn.execute(text("UPDATE pipeline_jobs SET updated_at = :at WHERE id = :id"),
                     {"at": jobs.utcnow() - timedelta(hours=hours), "id": job_id})


def test_only_jobs_finished_past_the_retention_lose_their_raw_batch(engine, monkeypatch):
    monkeypatch.setattr(maintenance, "EXPIRE_JOBS_PER_TRANSACTION", 2)  # several rounds
    old = [stored_job(engine, [{"campaign_id": f"old-{i}"}] * 3, ["ingest"], chunk=2)
           for i in range(5)]
    recent = stored_job(engine, [{"campaign_id": "recent"}], ["ingest"])
    running = stored_job(engine, [{"campaign_id": "running"}], ["ingest"])
    for job_id in [*old, recent]:
        close_job(engine, job_id)
    for job_id in [*old, running]:
        _finished_hours_ago(engine, job_id, 30)

    assert maintenance.expire_raw_batches(24) == 5
    for job_id in old:
        assert stage_output(engine, job_id, "raw") == []
        with engine.connect() as conn:
            assert jobs.get(conn, job_id)["status"] == "failed"  # the job row stays
    assert stage_output(engine, recent, "raw") == [{"campaign_id": "recent"}]
    assert stage_output(engine, running, "raw") == [{"campaign_id": "running"}]
    assert maintenance.expire_raw_batches(24) == 0  # nothing left to do
    close_job(engine, running)


def test_retention_is_a_number_of_hours_or_off_and_beat_runs_it():
    assert Settings.from_env({}).raw_retention_hours == 168.0
    assert Settings.from_env({"RAW_RETENTION_HOURS": "12"}).raw_retention_hours == 12.0
    assert Settings.from_env({"RAW_RETENTION_HOURS": "off"}).raw_retention_hours is None
    for bad in ("-1", "soon"):
        with pytest.raises(SettingsError, match="RAW_RETENTION_HOURS"):
            Settings.from_env({"RAW_RETENTION_HOURS": bad})
    schedule = celery_config(Settings.from_env({}))["beat_schedule"]
    assert schedule["expire-raw-batches"]["task"] == "maintenance.expire_raw_batches"
