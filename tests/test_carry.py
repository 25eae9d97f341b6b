"""Small batches ride with their stage messages (tasks/carry.py): a carried stage writes
nothing; the stage that lands the carry records what every carried stage did, exactly
as the stages would have by reference; a carry never overrides another delivery."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from tasks import carry as carried
from tasks.carry import Carry
from tasks.ingestion.tasks import ingest_step
from tasks.processing.tasks import process_step
from tasks.runner import fail_job, run_stage
from tasks.storage import jobs, payloads, quarantine
from tasks.storage.schema import DATA_TABLES, payloads_table
from tasks.storage.tasks import store_step
from tasks.validation.tasks import validate_step
from tests.helpers import close_job, stored_job, wait_job

pytestmark = pytest.mark.usefixtures("clean_tables")

STAGES = ["ingest", "validate", "process", "store"]
STEPS = {"ingest": ingest_step, "validate": validate_step, "process": process_step,
         "store": store_step}


def _rows(tag: str) -> list[dict[str, Any]]:
    return [
        {"campaign_id": f"{tag}-1", "date": "2025-03-01", "spend": "20", "impressions": 1000,
         "clicks": 10, "conversions": 2},
        {"campaign_id": f"{tag}-2", "date": "2025-03-01", "spend": "-1", "impressions": 10,
         "clicks": 1},  # a negative spend: quarantined by validation
    ]


def _carried_job(engine, tag: str, options: dict[str, Any] | None = None,  # type: ignore[no-untyped-def]
                 ) -> tuple[str, Carry]:
    """A job of two records stored as accept() stores it, and its first stage's carry."""
    rows = _rows(tag)
    job_id = stored_job(engine, rows, STAGES, {"raw_format": "records", **(options or {})})
    with engine.connect() as conn:
        job = jobs.get(conn, job_id)
    first = Carry.first(job, payloads.encode(rows))  # type: ignore[arg-type]
    assert first is not None
    return job_id, first


def _run(job_id: str, stage: str, carry: Carry, **options: Any) -> dict[str, Any]:
    return run_stage(job_id, stage, STEPS[stage], carry=carry, **options)


def _carry_on(job_id: str, stage: str, carry: Carry) -> Carry:
    summary = _run(job_id, stage, carry, pass_on=True)
    assert "carry" in summary, summary
    return Carry.from_message(job_id, summary["carry"])


def _payload_names(engine, job_id: str) -> set[str]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return set(conn.execute(select(payloads_table.c.name)
                                .where(payloads_table.c.job_id == job_id)).scalars())


def _quarantined(engine, job_id: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return quarantine.page(conn, job_id, 100, 0)


def _row(engine, job_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        job = jobs.get(conn, job_id)
    assert job is not None
    return job


def test_carried_stages_write_nothing_and_the_last_records_them_all(engine):
    job_id, carry = _carried_job(engine, "carry")
    for stage in STAGES[:3]:
        carry = _carry_on(job_id, stage, carry)
        row = _row(engine, job_id)
        assert row["status"] == jobs.QUEUED
        assert [s["status"] for s in row["stages"]] == [jobs.PENDING] * 4
        assert _payload_names(engine, job_id) == {payloads.RAW}
        assert _quarantined(engine, job_id) == []
    assert [o["name"] for o in carry.done] == STAGES[:3]
    assert [(r["stage"], r["index"]) for r in carry.rejected] == [("validate", 1)]
    assert carry.input_name == "process" and carry.records == 1

    summary = _run(job_id, "store", carry, pass_on=True)  # the last stage always lands

    assert "carry" not in summary
    row = _row(engine, job_id)
    assert row["status"] == jobs.SUCCEEDED
    assert [s["status"] for s in row["stages"]] == [jobs.SUCCEEDED] * 4
    counts = [(s["records_in"], s["records_out"]) for s in row["stages"]]
    assert counts == [(2, 2), (2, 1), (1, 1), (1, 1)]
    assert row["stages"][1]["result"]["invalid_count"] == 1
    ended = [s["finished_at"] for s in row["stages"]]
    assert ended == sorted(ended) and row["started_at"] is not None
    assert row["result"]["records_received"] == 2 and row["result"]["records_rejected"] == 1
    [refused] = _quarantined(engine, job_id)
    assert refused["stage"] == "validate" and refused["record_index"] == 1
    assert refused["record"]["campaign_id"] == "carry-2" and refused["reasons"]
    assert _payload_names(engine, job_id) == {payloads.RAW}  # outputs discarded as always
    table = DATA_TABLES["campaign_performance"]
    with engine.connect() as conn:
        stored = conn.execute(select(table.c.campaign_id, table.c.ctr)
                              .where(table.c.job_id == job_id)).all()
    assert [(c, float(ctr)) for c, ctr in stored] == [("carry-1", 0.01)]


def test_a_redelivered_carried_stage_lands_and_counts_its_restart(engine):
    job_id, carry = _carried_job(engine, "again")
    carry = _carry_on(job_id, "ingest", carry)
    try:
        summary = _run(job_id, "validate", carry, pass_on=True, redelivered=True)
        assert "carry" not in summary
        row = _row(engine, job_id)
        ingest, validate = row["stages"][:2]
        assert ingest["status"] == validate["status"] == jobs.SUCCEEDED
        assert ingest["records_out"] == 2 and validate.get("restarts") == 1
        # From here the job goes by reference: the landed input, validate's own output.
        assert _payload_names(engine, job_id) == {payloads.RAW, "ingest", "validate"}
        assert [r["stage"] for r in _quarantined(engine, job_id)] == ["validate"]
    finally:
        close_job(engine, job_id)


def test_a_carry_landed_by_a_delivery_that_died_is_not_recorded_twice(engine):
    """A restarted stage commits its claim, with the carry it landed, before its work; its
    worker dies; the message comes back once more and goes on from what was recorded."""
    job_id, carry = _carried_job(engine, "twice")
    for stage in STAGES[:3]:
        carry = _carry_on(job_id, stage, carry)

    def dies(*_: Any) -> Any:
        raise RuntimeError("the worker died here")

    with pytest.raises(RuntimeError):
        run_stage(job_id, "store", dies, carry=carry, redelivered=True, claimant="task-9")
    row = _row(engine, job_id)
    assert [s["status"] for s in row["stages"]] == [jobs.SUCCEEDED] * 3 + [jobs.RUNNING]

    _run(job_id, "store", carry, redelivered=True, claimant="task-9")

    row = _row(engine, job_id)
    assert row["status"] == jobs.SUCCEEDED and row["stages"][3]["restarts"] == 2
    assert len(_quarantined(engine, job_id)) == 1


def test_a_carried_failure_records_the_stages_before_it(engine):
    job_id, carry = _carried_job(engine, "fails", {
        "validation_rules": {"on_invalid": "reject_batch"}})
    carry = _carry_on(job_id, "ingest", carry)

    summary = _run(job_id, "validate", carry, pass_on=True)

    assert summary["failed"] == "validation_failed"
    row = _row(engine, job_id)
    assert row["status"] == jobs.FAILED and row["error"]["code"] == "validation_failed"
    assert [s["status"] for s in row["stages"]] == [
        jobs.SUCCEEDED, jobs.FAILED, jobs.PENDING, jobs.PENDING]
    assert row["stages"][0]["records_out"] == 2
    assert [r["record"]["campaign_id"] for r in _quarantined(engine, job_id)] == ["fails-2"]


def test_a_crash_after_carried_stages_records_them_with_the_failure(engine):
    job_id, carry = _carried_job(engine, "crash")
    for stage in STAGES[:2]:
        carry = _carry_on(job_id, stage, carry)

    fail_job(job_id, "process", "internal_error", "RuntimeError: boom", carry)

    row = _row(engine, job_id)
    assert row["status"] == jobs.FAILED and row["error"]["code"] == "internal_error"
    assert [s["status"] for s in row["stages"]] == [
        jobs.SUCCEEDED, jobs.SUCCEEDED, jobs.FAILED, jobs.PENDING]
    assert [r["stage"] for r in _quarantined(engine, job_id)] == ["validate"]


def test_a_carry_steps_aside_once_another_delivery_has_claimed_the_job(engine):
    """The recovery sweep resent the job by reference (its carried messages looked lost):
    whichever delivery claims a stage first owns the job, and the other does nothing."""
    job_id, carry = _carried_job(engine, "aside")
    for stage in STAGES[:3]:
        carry = _carry_on(job_id, stage, carry)
    try:
        run_stage(job_id, "ingest", ingest_step)  # the sweep's delivery, by reference
        assert _run(job_id, "store", carry) == {"job_id": job_id, "stage": "store",
                                                "skipped": True}
        # Nor does a carried stage's crash fail the job that delivery is running.
        fail_job(job_id, "store", "internal_error", "RuntimeError: boom", carry)
        assert _row(engine, job_id)["status"] == jobs.RUNNING
        row = _row(engine, job_id)
        assert [s["status"] for s in row["stages"]] == [
            jobs.SUCCEEDED, jobs.PENDING, jobs.PENDING, jobs.PENDING]
        assert _quarantined(engine, job_id) == []
        assert _payload_names(engine, job_id) == {payloads.RAW, "ingest"}
    finally:
        close_job(engine, job_id)


def test_an_output_too_big_to_carry_is_handed_on_by_reference(engine, monkeypatch):
    job_id, carry = _carried_job(engine, "big")
    monkeypatch.setattr(carried, "CARRY_BYTES", 100)
    try:
        summary = _run(job_id, "ingest", carry, pass_on=True)
        assert "carry" not in summary and summary["records_out"] == 2
        row = _row(engine, job_id)
        assert row["stages"][0]["status"] == jobs.SUCCEEDED
        assert _payload_names(engine, job_id) == {payloads.RAW, "ingest"}
    finally:
        close_job(engine, job_id)


def test_a_malformed_carry_is_refused():
    with pytest.raises(carried.BadCarry):
        Carry.from_message("a-job", {"job": {"id": "a-job"}})
    with pytest.raises(carried.BadCarry):
        Carry.from_message("a-job", {"job": {"id": "another", "stages": ["ingest"]},
                                     "input": {"name": "raw", "body": "[]", "records": 0},
                                     "done": [], "rejected": []})


def test_a_small_job_through_the_workers_is_carried_to_its_store(client, engine):
    """Through real workers: the three carried stages were recorded by the store's landing
    (no claim of their own), and the job reads as any other."""
    response = client.post("/api/v1/data_pipeline/ingest", json={
        "source": "generic", "data_type": "campaign_performance",
        "data": {"records": _rows("worker")}})
    assert response.status_code == 202
    job = wait_job(client, response.get_json()["job_id"])
    assert job["status"] == "succeeded", job
    assert [s["records_out"] for s in job["stages"]] == [2, 1, 1, 1]
    assert job["result"]["records_rejected"] == 1
    row = _row(engine, job["job_id"])
    claimed = [s["name"] for s in row["stages"] if s.get("claimed_by")]
    assert claimed == ["store"]
