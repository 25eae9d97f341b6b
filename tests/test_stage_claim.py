"""A stage's claim reads the job row locked and the head of its input in one round trip
(`lock_job_with_input`); what it reads is what `jobs.get` and a fresh read would give,
and a claim that waited for the stage before it to commit still finds that stage's
output. Two claims of one stage at once record one outcome."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from tasks.chunks import HEAD_BODY_BYTES, StageInput, lock_job_with_input
from tasks.runner import run_stage
from tasks.stage import StageFailure
from tasks.storage import jobs, payloads
from tasks.storage.quarantine import Rejected
from tasks.validation.tasks import validate_step
from tests.helpers import close_job, stored_job

pytestmark = pytest.mark.usefixtures("clean_tables")


def _rows(n: int, tag: str = "claim") -> list[dict[str, Any]]:
    return [{"campaign_id": f"{tag}-{i}", "date": "2025-03-01", "spend": "1",
             "impressions": 10, "clicks": 1} for i in range(n)]


def test_the_job_row_is_the_one_get_reads_and_the_head_is_the_stages_input(engine):
    job_id = stored_job(engine, _rows(5), ["ingest", "validate", "store"], chunk=2)
    try:
        with engine.begin() as conn:
            payloads.save(conn, job_id, "ingest", _rows(3, "out"))
            job, raw_head = lock_job_with_input(conn, job_id, "ingest")
            _, ingest_head = lock_job_with_input(conn, job_id, "validate")
            _, nothing_yet = lock_job_with_input(conn, job_id, "store")
            assert job == jobs.get(conn, job_id)
            with engine.connect() as other, pytest.raises(OperationalError):
                other.execute(text("SELECT 1 FROM pipeline_jobs WHERE id = :j"
                                   " FOR UPDATE NOWAIT"), {"j": job_id})
        assert (raw_head.seq, raw_head.record_count, raw_head.chunks) == (0, 2, 3)
        assert raw_head.body is not None
        assert [r["campaign_id"] for r in orjson.loads(raw_head.body)] == ["claim-0", "claim-1"]
        assert (ingest_head.seq, ingest_head.record_count, ingest_head.chunks) == (0, 3, 1)
        assert nothing_yet.seq is None and nothing_yet.chunks == 0
        with engine.connect() as conn:
            unknown, head = lock_job_with_input(conn, "00000000-0000-0000-0000-000000000000",
                                                "ingest")
        assert unknown is None and head.seq is None
    finally:
        close_job(engine, job_id)


def test_a_big_first_chunk_is_left_for_the_stage_to_read(engine):
    # Random text, so that compression leaves it bigger than the head's limit.
    big = [{**row, "campaign_name": os.urandom(1000).hex()} for row in _rows(80, "big")]
    job_id = stored_job(engine, big, ["ingest", "store"])
    try:
        with engine.begin() as conn:
            _, head = lock_job_with_input(conn, job_id, "ingest")
            assert head.seq == 0 and head.chunks == 1
            size = conn.execute(text(
                "SELECT pg_column_size(body) FROM pipeline_payloads WHERE job_id = :j"),
                {"j": job_id}).scalar_one()
            assert size > HEAD_BODY_BYTES
            assert head.body is None
            source = StageInput(conn, job_id, payloads.RAW, head)
            assert [chunk for _, chunk in source.chunks()] == [big]
            assert source.stored() == [(0, 80)]
    finally:
        close_job(engine, job_id)


def _claims_waiting(engine) -> int:  # type: ignore[no-untyped-def]
    # From a connection of its own: a transaction sees one snapshot of pg_stat_activity.
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database() AND query LIKE '%JOIN LATERAL%'")).scalar_one()


def test_a_claim_that_waited_for_the_stage_before_it_still_reads_that_stages_output(engine):
    """The claim's row lock waits for the transaction that finishes the stage before;
    its read of the input was made before that commit and saw no chunk yet."""
    job_id = stored_job(engine, _rows(4), ["ingest", "validate", "store"])
    summary: dict[str, Any] = {}
    with engine.begin() as conn:
        job = jobs.claim_stage(conn, job_id, "ingest", "ingest-task", 60.0, write=False)
        assert job is not None
        waiting = threading.Thread(target=lambda: summary.update(
            run_stage(job_id, "validate", validate_step)))
        waiting.start()
        deadline = time.monotonic() + 10
        while not _claims_waiting(engine):
            assert time.monotonic() < deadline, "the validate claim never waited"
            time.sleep(0.02)
        payloads.save(conn, job_id, "ingest", _rows(4))
        jobs.finish_stage(conn, job, "ingest", records_in=4, records_out=4, result={})
    waiting.join(30)
    assert summary.get("records_out") == 4, summary
    with engine.connect() as conn:
        job = jobs.get(conn, job_id)
    assert job is not None
    assert job["stages"][1]["records_in"] == 4
    close_job(engine, job_id)


def test_two_deliveries_failing_on_the_same_batch_quarantine_its_records_once(engine):
    """A delivery takes the stage over from one presumed dead (here: at once) and both
    fail on the same batch: the failure of the one that had been taken over is not
    recorded, so the refused record is quarantined once."""
    job_id = stored_job(engine, _rows(1), ["store"])
    first_running, first_may_fail = threading.Event(), threading.Event()

    def refusing_step(conn, job, source, sink):  # type: ignore[no-untyped-def]
        records = [record for _, chunk in source.chunks() for record in chunk]
        if not first_running.is_set():
            first_running.set()
            assert first_may_fail.wait(30)
        raise StageFailure("invalid_dates", "no date is valid", rejected=[
            Rejected(0, records[0], [{"rule": "date", "message": "not a date"}])])

    outcomes: list[dict[str, Any]] = []
    # Redelivered: its claim is committed first, as a stage's that spans chunks is.
    first = threading.Thread(target=lambda: outcomes.append(run_stage(
        job_id, "store", refusing_step, claimant="first", redelivered=True)))
    first.start()
    assert first_running.wait(30)
    outcomes.append(run_stage(job_id, "store", refusing_step, claimant="second",
                              stale_seconds=0.0))
    first_may_fail.set()
    first.join(30)
    assert [sorted(outcome) for outcome in outcomes] == [
        ["failed", "job_id", "stage"], ["job_id", "stage", "superseded"]], outcomes
    with engine.connect() as conn:
        job = jobs.get(conn, job_id)
        quarantined = conn.execute(text(
            "SELECT count(*) FROM pipeline_rejected WHERE job_id = :j"), {"j": job_id}
        ).scalar_one()
    assert job is not None and job["status"] == jobs.FAILED
    assert job["error"]["code"] == "invalid_dates"
    assert quarantined == 1


class _WorkerDied(Exception):
    """Stands for a worker killed mid-stage (by the hard time limit, say): its message is
    acked, not redelivered, and only the sweep sends the stage again."""


def test_takeovers_of_a_stage_whose_holder_stopped_count_as_restarts(engine):
    """A stage whose worker is killed every time (here: by the hard time limit, which
    acks its message) comes back from the sweep under a new task each time, never
    redelivered: each takeover of the stale claim counts, and the job stops."""
    job_id = stored_job(engine, _rows(1), ["store"])

    def dies(conn, job, source, sink):  # type: ignore[no-untyped-def]
        raise _WorkerDied

    outcomes: list[Any] = []
    for n in range(3):
        try:
            outcomes.append(run_stage(job_id, "store", dies, claimant=f"task-{n}",
                                      stale_seconds=0.0, max_restarts=2,
                                      redelivered=n == 0))  # the first came back once
        except _WorkerDied:
            outcomes.append("died")
    assert outcomes == ["died", "died",
                        {"job_id": job_id, "stage": "store", "failed": "stage_interrupted"}]
    with engine.connect() as conn:
        job = jobs.get(conn, job_id)
    assert job is not None and job["status"] == jobs.FAILED
    assert "came back 3 times" in job["error"]["message"]
