"""Durable acceptance: the job row and raw batch are committed before the 202, and Celery
messages carry the job id only, never the records."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import orjson
import pytest
from sqlalchemy import select

from tasks.celery_app import make_celery
from tasks.storage import db, jobs, payloads
from tasks.storage.schema import payloads_table
from tasks.submit import accept


@pytest.fixture
def parked(engine):  # type: ignore[no-untyped-def]
    """Job ids a test accepted but never let a worker run; they are closed afterwards."""
    ids: list[str] = []
    yield ids
    with engine.begin() as conn:
        for job_id in ids:
            jobs.fail(conn, job_id, None, "test_parked", "parked by a test, never sent")


def _records(n: int) -> list[dict]:
    return [
        {"campaign_id": f"durable-{i}", "spend": "12.34", "impressions": 1000, "clicks": 7,
         "date": "2025-01-15"}
        for i in range(n)
    ]


def test_after_202_the_job_and_raw_batch_are_in_postgresql(client, engine, job_waiter):
    records = _records(3)
    response = client.post("/api/v1/data_pipeline/ingest", json={
        "source": "generic", "data_type": "campaign_performance", "data": {"records": records}})
    assert response.status_code == 202
    job_id = response.get_json()["job_id"]
    with engine.connect() as conn:
        job = jobs.get(conn, job_id)
        raw = payloads.load(conn, job_id, payloads.RAW)
    assert job is not None and job["records_count"] == 3
    assert raw == records
    assert job_waiter(job_id)["status"] == "succeeded"
    with engine.connect() as conn:  # the raw batch stays (for its retention); the rest goes
        names = {r.name for r in conn.execute(
            select(payloads_table.c.name).where(payloads_table.c.job_id == job_id))}
    assert names == {payloads.RAW}


def test_accepted_batch_survives_an_unreachable_broker(settings, engine, parked):
    dead_broker = make_celery(replace(settings, broker_url="redis://127.0.0.1:1/0"))
    job = accept(
        engine, dead_broker, kind="pipeline", stages=("ingest", "validate", "process", "store"),
        data_type="campaign_performance", source="generic", data={"records": _records(5)},
        records_count=5,
    )
    db.configure(settings.database_url)
    parked.append(job["id"])
    with engine.connect() as conn:
        stored = jobs.get(conn, job["id"])
        raw = payloads.load(conn, job["id"], payloads.RAW)
    assert stored["status"] == jobs.QUEUED and stored["enqueue_count"] == 0
    assert len(raw) == 5  # durable: the recovery sweep can send it once the broker is back


def _first_message(settings, engine, parked, count: int):  # type: ignore[no-untyped-def]
    """Accept `count` records with a broker no worker reads; the one message sent."""
    capture = make_celery(settings)
    capture.conf.task_routes = {}
    capture.conf.task_default_queue = "capture-only"  # no worker listens here
    db.configure(settings.database_url)
    job = accept(
        engine, capture, kind="pipeline", stages=("ingest", "validate", "process", "store"),
        data_type="campaign_performance", source="generic", data={"records": _records(count)},
        records_count=count,
    )
    parked.append(job["id"])
    with capture.connection_for_write() as conn:
        redis = conn.default_channel.client
        raw_messages = redis.lrange("capture-only", 0, -1)
        redis.delete("capture-only")
    assert len(raw_messages) == 1
    envelope = json.loads(raw_messages[0])
    assert envelope["headers"]["task"] == "ingestion.ingest"
    args, kwargs, embed = orjson.loads(base64.b64decode(envelope["body"]))
    assert args == [job["id"]]
    assert [s["task"] for s in embed["chain"]] == [
        "storage.store", "processing.process", "validation.validate"]
    assert all(s["args"] == [job["id"]] for s in embed["chain"])
    return job, raw_messages[0], envelope, kwargs


@pytest.mark.parametrize("count", [1_000, 10_000])
def test_messages_of_big_batches_carry_the_job_id_not_the_records(settings, engine, count,
                                                                   parked):
    _, raw_message, _, kwargs = _first_message(settings, engine, parked, count)
    assert kwargs == {}
    assert len(raw_message) < 4096
    assert b"durable-" not in raw_message


def test_a_small_batch_rides_with_the_first_message_and_task_events_do_not_show_it(
        settings, engine, parked):
    """A batch of at most CARRY_BYTES travels with its stages' messages (tasks/carry.py);
    the raw batch is stored all the same, and Flower's view of the task names no record."""
    job, _, envelope, kwargs = _first_message(settings, engine, parked, 3)
    carry = kwargs["carry"]
    assert carry["input"]["name"] == "raw" and carry["input"]["records"] == 3
    assert [r["campaign_id"] for r in orjson.loads(carry["input"]["body"])] == [
        "durable-0", "durable-1", "durable-2"]
    assert carry["job"]["id"] == job["id"] and carry["done"] == [] == carry["rejected"]
    assert "durable-" not in envelope["headers"]["kwargsrepr"]
    with engine.connect() as conn:
        assert len(payloads.load(conn, job["id"], payloads.RAW)) == 3


def test_a_stage_never_runs_before_the_stages_it_depends_on(settings, engine, parked):
    """A message for a later stage (sent ahead, or after an earlier stage's commit was
    lost in a database crash) does nothing: its input does not exist yet."""
    from tasks.runner import run_stage
    from tasks.storage.tasks import store_step

    capture = make_celery(settings)
    capture.conf.task_routes = {}
    capture.conf.task_default_queue = "capture-only"
    db.configure(settings.database_url)
    job = accept(
        engine, capture, kind="pipeline", stages=("ingest", "validate", "process", "store"),
        data_type="campaign_performance", source="generic", data={"records": _records(3)},
        records_count=3,
    )
    parked.append(job["id"])
    with capture.connection_for_write() as conn:
        conn.default_channel.client.delete("capture-only")
    assert run_stage(job["id"], "store", store_step)["skipped"] is True
    with engine.connect() as conn:
        stored = jobs.get(conn, job["id"])
    assert [s["status"] for s in stored["stages"]] == ["pending"] * 4


def test_the_sweep_passes_over_a_job_whose_row_a_stage_holds(app, client, engine, job_waiter):
    """A stage of one chunk holds its job row from claim to commit. A job that looks
    stale while so held is at work: the sweep neither waits for it (it would hold up
    every other job's recovery) nor sends it again; once the row is free, it does."""
    import threading

    from sqlalchemy import text

    from tasks import maintenance
    from tests.helpers import stored_job

    job_id = stored_job(engine, [{"campaign_id": "sweep-1", "spend": "1"}], ["ingest"])
    with engine.begin() as conn:
        conn.execute(text("UPDATE pipeline_jobs SET updated_at = now() - interval '1 hour'"
                          " WHERE id = :id"), {"id": job_id})
    celery_app = app.extensions["celery"]
    found: dict[str, list[str]] = {}
    with engine.connect() as holder, holder.begin():
        jobs.get(holder, job_id, for_update=True)  # as a running stage holds it
        sweep = threading.Thread(
            target=lambda: found.update(ids=maintenance.recover(celery_app, 60)))
        sweep.start()
        sweep.join(10)
        assert not sweep.is_alive(), "the sweep waited for a job row a stage holds"
    assert job_id not in found["ids"]
    assert job_id in maintenance.recover(celery_app, 60)
    assert job_waiter(job_id)["status"] == "succeeded"
