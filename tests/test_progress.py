"""Progress of a running stage: on the job row (GET /api/v1/jobs/<id>), from the runner and
from a core's per-chunk `progress.report`, and as the Celery state PROGRESS Flower shows."""

from __future__ import annotations

import time
from typing import Any

import pytest
from celery.events.state import State

from tasks import progress, runner, stats
from tasks.chunks import StageInput
from tasks.runner import run_stage
from tasks.stage import StageFailure, StageOutput
from tasks.storage import jobs
from tests.helpers import stored_job

CAMPAIGN = "campaign_performance"


@pytest.fixture(autouse=True)
def claimed_stages(monkeypatch):  # type: ignore[no-untyped-def]
    """Stages run here as long ones do (a committed claim, progress on the job row); a
    stage of one chunk runs in one transaction and records progress only at its end."""
    monkeypatch.setattr(runner, "ONE_TRANSACTION_RECORDS", 0)


def _job(engine, records: list[dict[str, Any]], stages: list[str]) -> str:  # type: ignore[no-untyped-def]
    return stored_job(engine, records, stages)


def _progress(engine, job_id: str) -> dict[str, Any] | None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        job = jobs.get(conn, job_id)
    assert job is not None
    return job["progress"]


def test_the_job_row_shows_start_each_reported_chunk_and_end(engine, client, monkeypatch):
    monkeypatch.setattr(progress, "MIN_INTERVAL_SECONDS", 0.0)
    records = [{"campaign_id": f"p-{i}", "spend": 1.0} for i in range(30)]
    job_id = _job(engine, records, ["validate"])
    seen: list[Any] = []

    def step(conn: Any, job: dict[str, Any], source: StageInput, sink: Any) -> StageOutput:
        payload = [r for _, chunk in source.chunks() for r in chunk]
        seen.append(_progress(engine, job_id))  # the runner's start, read as a client would
        for done in (10, 20):
            progress.report(done)
            seen.append(client.get(f"/api/v1/jobs/{job_id}").get_json()["progress"])
        return StageOutput(records=payload, result={"status": "success"},
                           records_in=len(payload))

    summary = run_stage(job_id, "validate", step)

    assert summary["records_out"] == 30
    assert seen == [
        {"stage": "validate", "records_done": 0, "records_total": 30},
        {"stage": "validate", "records_done": 10, "records_total": 30},
        {"stage": "validate", "records_done": 20, "records_total": 30},
    ]
    job = client.get(f"/api/v1/jobs/{job_id}").get_json()
    assert job["status"] == "succeeded"
    assert job["progress"] == {"stage": "validate", "records_done": 30, "records_total": 30}


def test_reports_are_spaced_out_and_a_no_op_outside_a_stage(engine):
    progress.report(5)  # nothing to report to: no error, nothing written
    job_id = _job(engine, [{"campaign_id": "p-x"}] * 4, ["validate"])
    writes: list[Any] = []

    def step(conn: Any, job: dict[str, Any], source: StageInput, sink: Any) -> StageOutput:
        payload = [r for _, chunk in source.chunks() for r in chunk]
        for done in range(1, 5):
            progress.report(done)  # within MIN_INTERVAL_SECONDS: only the first is written
            writes.append(_progress(engine, job_id)["records_done"])
        return StageOutput(records=payload, result={}, records_in=len(payload))

    run_stage(job_id, "validate", step)
    assert writes == [1, 1, 1, 1]


def test_a_failed_stage_keeps_its_last_progress_and_is_counted(engine):
    job_id = _job(engine, [{"campaign_id": "p-f"}] * 3, ["process"])
    assert stats.flush()  # stages earlier tests ran in this process are counted first
    with engine.connect() as conn:
        before = stats.read(conn).get(("process", CAMPAIGN, stats.FAILED))

    def step(conn: Any, job: dict[str, Any], source: StageInput, sink: Any) -> StageOutput:
        progress.report(2)
        raise StageFailure("broken", "the core gave up")

    assert run_stage(job_id, "process", step)["failed"] == "broken"
    assert stats.flush()  # counters are written by a thread of their own
    assert _progress(engine, job_id) == {"stage": "process", "records_done": 2,
                                         "records_total": 3}
    with engine.connect() as conn:
        after = stats.read(conn)[("process", CAMPAIGN, stats.FAILED)]
    assert after.runs == (before.runs if before else 0) + 1
    assert after.records_in == (before.records_in if before else 0) + 3


def test_workers_publish_the_celery_progress_state(client, job_waiter, celery_events):
    records = [{"campaign_id": f"e-{i}", "spend": 3.0} for i in range(5)]
    response = client.post("/api/v1/data_pipeline/ingest", json={
        "source": "meta_ads", "data_type": CAMPAIGN, "data": {"records": records}})
    job_id = response.get_json()["job_id"]
    assert job_waiter(job_id)["status"] == "succeeded"

    deadline = time.monotonic() + 10
    ours: list[dict[str, Any]] = []
    while len({e["stage"] for e in ours}) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
        ours = [e for e in celery_events
                if e["type"] == progress.PROGRESS_EVENT and e.get("job_id") == job_id]
    by_stage = {stage: [e for e in ours if e["stage"] == stage]
                for stage in ("ingest", "validate", "process", "store")}
    for stage, events in by_stage.items():
        assert {(e["records_done"], e["records_total"]) for e in events} >= {(0, 5), (5, 5)}, \
            stage
    # Flower keeps task state with celery's own State: these events make it PROGRESS.
    state = State()
    event = by_stage["store"][0]
    state.event(event)
    task = state.tasks[event["uuid"]]
    assert task.state == progress.PROGRESS_STATE
    assert task.records_total == 5
