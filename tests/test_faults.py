"""Nothing accepted is lost: worker killed, Redis emptied, PostgreSQL restarted, SIGTERM.

Each test runs real worker processes against a private PostgreSQL and Redis of its own
(started from the wheels in a temporary folder), so it can kill and restart them freely.
Every test ends with the stored rows exactly equal to what was accepted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from stack.embedded import EmbeddedServers
from tasks.carry import CARRY_BYTES
from tasks.celery_app import PIPELINE_STAGES, make_celery
from tasks.settings import Settings
from tasks.storage import db, jobs
from tasks.submit import accept
from tests.conftest import start_worker, stop_worker

BATCH = 50_000
STALE_SECONDS = "3"


class FaultStack:
    """Private servers, the env for workers, and a Celery app to submit with."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.servers = EmbeddedServers(root / "var")
        self.servers.start()
        self.env = {
            **self.servers.env(),
            "STALE_JOB_SECONDS": STALE_SECONDS,
            "RECOVERY_SWEEP_SECONDS": "1",
        }
        self.settings = Settings.from_env(self.env)
        self.celery = make_celery(self.settings)  # also points db at the private database
        self.engine = db.get_engine()
        self.workers: list[subprocess.Popen[bytes]] = []

    def worker(self) -> subprocess.Popen[bytes]:
        n = len(self.workers)
        process = start_worker(self.env, self.root / f"worker-{n}.log", concurrency=1,
                               extra_args=("--beat", "--schedule",
                                           str(self.root / f"beat-{n}")))
        self.workers.append(process)
        return process

    def submit(self, records: list[dict[str, Any]]) -> str:
        job = accept(self.engine, self.celery, kind="pipeline", stages=PIPELINE_STAGES,
                     data_type="campaign_performance", source="generic",
                     data={"records": records}, records_count=len(records))
        return job["id"]

    def job(self, job_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            job = jobs.get(conn, job_id)
        assert job is not None
        return job

    def wait_until(self, job_id: str, ready: Callable[[dict[str, Any]], bool],
                   timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                job = self.job(job_id)
                if ready(job):
                    return job
            except Exception:  # the database may be restarting
                pass
            assert time.monotonic() < deadline, f"timed out: {self.job(job_id)}"
            time.sleep(0.01)

    def stored(self) -> tuple[int, int, Decimal]:
        with self.engine.connect() as conn:
            return tuple(conn.execute(text(
                "SELECT count(*), count(DISTINCT campaign_id), sum(spend) "
                "FROM campaign_performance")).one())  # type: ignore[return-value]

    def reset_tables(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(text("TRUNCATE campaign_performance, pipeline_jobs CASCADE"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory, settings) -> Iterator[FaultStack]:  # type: ignore[no-untyped-def]
    faults = FaultStack(tmp_path_factory.mktemp("faults"))
    from tasks.storage.schema import create_schema

    create_schema(faults.engine)
    yield faults
    for process in faults.workers:
        stop_worker(process, signal.SIGKILL)
    faults.servers.stop()
    db.configure(settings.database_url)  # give the rest of the suite its database back


@pytest.fixture
def fresh(stack: FaultStack) -> Iterator[FaultStack]:
    stack.reset_tables()
    yield stack
    for process in stack.workers:
        stop_worker(process, signal.SIGKILL)
    stack.workers.clear()


def batch(tag: str, n: int = BATCH) -> tuple[list[dict[str, Any]], Decimal]:
    records = [
        {"campaign_id": f"{tag}-{i}", "account_id": "acc", "date": "2025-01-15",
         "spend": f"{i % 997}.{i % 100:02d}", "impressions": 1000 + i, "clicks": i % 50}
        for i in range(n)
    ]
    return records, sum(Decimal(r["spend"]) for r in records)


def stage_running(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda job: any(s["name"] == name and s["status"] == "running"
                           for s in job["stages"])


def succeeded(job: dict[str, Any]) -> bool:
    assert job["status"] != "failed", job["error"]
    return job["status"] == "succeeded"


def assert_exactly(stack: FaultStack, total: Decimal, n: int = BATCH) -> None:
    assert stack.stored() == (n, n, total)


def test_worker_killed_with_sigkill_during_the_store(fresh: FaultStack):
    records, total = batch("kill")
    first = fresh.worker()
    job_id = fresh.submit(records)
    fresh.wait_until(job_id, stage_running("store"))
    os.killpg(first.pid, signal.SIGKILL)  # the worker, its child and its beat: all gone
    first.wait(10)
    assert fresh.job(job_id)["status"] == "running"

    fresh.worker()  # its recovery sweep finds the stage without a heartbeat
    job = fresh.wait_until(job_id, succeeded)
    store = job["stages"][-1]
    assert store["attempt"] >= 2
    assert job["result"]["inserted"] == BATCH
    assert_exactly(fresh, total)


@pytest.mark.parametrize("n", [BATCH, 2])  # by reference; small, carried in the messages
def test_redis_restarted_and_emptied_before_a_worker_took_the_job(fresh: FaultStack, n: int):
    records, total = batch("redis", n)
    job_id = fresh.submit(records)  # 202 point: the message is only in Redis
    fresh.servers.stop_redis()
    for path in fresh.servers.redis_dir.iterdir():  # emptied: nothing of the queue remains
        if path.name != "redis.conf":
            if path.is_dir():
                for inner in path.iterdir():
                    inner.unlink()
                path.rmdir()
            else:
                path.unlink()
    fresh.servers.start_redis()
    assert fresh.job(job_id)["status"] == "queued"

    fresh.worker()
    job = fresh.wait_until(job_id, succeeded)
    assert job["enqueue_count"] >= 2  # once at acceptance, again by the sweep
    assert_exactly(fresh, total, n)


def test_postgresql_restarted_during_a_run(fresh: FaultStack):
    records, total = batch("pg")
    fresh.worker()
    job_id = fresh.submit(records)
    fresh.wait_until(job_id, stage_running("store"))
    fresh.servers.stop_postgres()
    time.sleep(1.0)
    fresh.servers.start_postgres()

    job = fresh.wait_until(job_id, succeeded)
    assert job["result"]["records_count"] == BATCH
    assert_exactly(fresh, total)
    log = "".join(p.read_text(errors="replace") for p in fresh.root.glob("worker-*.log"))
    assert "database error, retry" in log


def test_worker_stopped_with_sigterm_during_a_job(fresh: FaultStack):
    records, total = batch("term")
    first = fresh.worker()
    job_id = fresh.submit(records)
    fresh.wait_until(job_id, stage_running("process"))
    first.send_signal(signal.SIGTERM)  # what docker stop and systemd send: a warm shutdown
    first.wait(60)
    if fresh.job(job_id)["status"] != "succeeded":
        fresh.worker()  # whatever was left is picked up again
    fresh.wait_until(job_id, succeeded)
    assert_exactly(fresh, total)


def _pool_children(worker: subprocess.Popen[bytes]) -> list[int]:
    with open(f"/proc/{worker.pid}/task/{worker.pid}/children") as children:
        return [int(pid) for pid in children.read().split()]


def test_a_stage_whose_worker_dies_every_time_stops_its_job(fresh: FaultStack):
    """As a record that crashes the worker process would: each time the validate stage
    runs, its pool process is killed. The broker redelivers the message, each return is
    counted, and past MAX_STAGE_RESTARTS the job fails instead of looping for ever."""
    log = fresh.root / "poison-worker.log"
    worker = start_worker({**fresh.env, "MAX_STAGE_RESTARTS": "3"}, log, concurrency=1)
    fresh.workers.append(worker)
    records, _ = batch("poison")  # several chunks: every start commits its claim
    job_id = fresh.submit(records)
    for attempt in (1, 2, 3, 4):
        fresh.wait_until(job_id, lambda job, n=attempt: any(
            s["name"] == "validate" and s["status"] == "running" and s.get("attempt") == n
            for s in job["stages"]))
        for pid in _pool_children(worker):  # the process running the stage, nothing else
            os.kill(pid, signal.SIGKILL)
    job = fresh.wait_until(job_id, lambda job: job["status"] == "failed")
    assert job["error"]["code"] == "stage_interrupted", job["error"]
    assert job["error"]["details"] == {"restarts": 4}
    assert [s["status"] for s in job["stages"]] == ["succeeded", "failed", "pending", "pending"]
    assert fresh.stored()[0] == 0


def _backend_waiting_to_write_a_payload(stack: FaultStack) -> int | None:
    """The server process of a stage that waits to write a payload, if any."""
    # A transaction of its own: pg_stat_activity is a snapshot taken once per transaction.
    with stack.engine.connect() as conn:
        return conn.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND (query LIKE 'COPY \"pipeline_payloads\"%'"  # records
            "      OR query LIKE 'INSERT INTO pipeline_payloads %')"  # a reference
            " LIMIT 1")).scalar()


def _gone(stack: FaultStack, backend: int) -> bool:
    with stack.engine.connect() as conn:
        return not conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                                {"pid": backend}).scalar()


def test_a_one_record_stage_whose_worker_dies_every_time_stops_its_job(fresh: FaultStack):
    """The same for a stage of one chunk, which runs in the transaction that claims it:
    only the broker's redelivered flag makes its next run count. The test holds an
    uncommitted row that the stage must write, so each run waits where it can be killed."""
    log = fresh.root / "poison-one-worker.log"
    worker = start_worker({**fresh.env, "MAX_STAGE_RESTARTS": "2"}, log, concurrency=1)
    fresh.workers.append(worker)
    # One record, but too big to ride with the messages (tasks/carry.py): the stages go
    # by reference, and the first one writes the payload the test holds.
    job_id = fresh.submit([{"campaign_id": "poison-1", "date": "2025-01-15", "spend": "1",
                            "campaign_name": "p" * (CARRY_BYTES + 1)}])
    kills = 0
    while fresh.job(job_id)["status"] != "failed":
        assert kills < 5, fresh.job(job_id)
        with fresh.engine.connect() as blocker:
            blocker.execute(text(
                "INSERT INTO pipeline_payloads (job_id, name, seq, record_count, body) "
                "VALUES (:job, 'ingest', 0, 0, '[]')"), {"job": job_id})
            deadline = time.monotonic() + 30
            while (backend := _backend_waiting_to_write_a_payload(fresh)) is None:
                if fresh.job(job_id)["status"] == "failed":
                    break
                assert time.monotonic() < deadline, fresh.job(job_id)
                time.sleep(0.01)
            else:
                children = _pool_children(worker)
                assert children, "a stage waits, so the pool has the child running it"
                for pid in children:
                    os.kill(pid, signal.SIGKILL)
                kills += 1
            blocker.rollback()
        # The killed run's server process sees its client gone once the row is let go:
        # until it has, it would be taken for the next run's.
        while backend is not None and not _gone(fresh, backend):
            assert time.monotonic() < deadline, backend
            time.sleep(0.01)
    job = fresh.job(job_id)
    assert job["error"]["code"] == "stage_interrupted", job["error"]
    assert job["error"]["details"] == {"restarts": 3}
    assert kills == 3  # the first run, then two counted restarts; the third return stops it


def _backend_waiting_on_audience(stack: FaultStack) -> int | None:
    """The server process of a stage whose audience lookup waits for a lock, if any."""
    with stack.engine.connect() as conn:
        return conn.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND query LIKE '%audience%' AND pid <> pg_backend_pid() LIMIT 1")).scalar()


def test_a_worker_killed_in_a_carried_stage_loses_nothing(fresh: FaultStack):
    """A small batch rides with its stage messages (tasks/carry.py): when the worker dies
    in its process stage, the stages before it have written nothing. The redelivered
    message records them, with the record validation quarantined, once, and the job goes
    on by reference. The test holds a lock on the audience table, which the process
    stage's enrichment reads, so the stage waits where it can be killed."""
    worker = start_worker(fresh.env, fresh.root / "carried-worker.log", concurrency=1)
    fresh.workers.append(worker)
    records = [
        {"campaign_id": "carried-1", "account_id": "acc", "date": "2025-01-15",
         "spend": "5", "impressions": 100, "clicks": 5},
        {"campaign_id": "carried-2", "account_id": "acc", "date": "2025-01-15",
         "spend": "-1"},  # refused by validation
    ]
    with fresh.engine.connect() as blocker:
        blocker.execute(text("LOCK TABLE audience IN ACCESS EXCLUSIVE MODE"))
        job_id = accept(
            fresh.engine, fresh.celery, kind="pipeline", stages=PIPELINE_STAGES,
            data_type="campaign_performance", source="generic", data={"records": records},
            records_count=2, options={"processing_options": {
                "enrich_with_audience_data": True}})["id"]
        deadline = time.monotonic() + 30
        while _backend_waiting_on_audience(fresh) is None:
            assert time.monotonic() < deadline, fresh.job(job_id)
            time.sleep(0.01)
        waiting = fresh.job(job_id)
        assert waiting["status"] == jobs.QUEUED  # ingest and validate were carried
        assert [s["status"] for s in waiting["stages"]] == [jobs.PENDING] * 4
        for pid in _pool_children(worker):
            os.kill(pid, signal.SIGKILL)
        blocker.rollback()
    job = fresh.wait_until(job_id, succeeded)
    assert [(s["status"], s["records_out"]) for s in job["stages"]] == [
        ("succeeded", 2), ("succeeded", 1), ("succeeded", 1), ("succeeded", 1)]
    assert job["stages"][2].get("restarts") == 1
    with fresh.engine.connect() as conn:
        refused = conn.execute(text(
            "SELECT stage, record->>'campaign_id' FROM pipeline_rejected WHERE job_id = :j"),
            {"j": job_id}).all()
    assert [tuple(r) for r in refused] == [("validate", "carried-2")]
    assert fresh.stored()[:2] == (1, 1)
