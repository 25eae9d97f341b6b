"""Fixtures: a fresh PostgreSQL database, a Redis broker and real Celery worker processes.

With DATABASE_URL and CELERY_BROKER_URL set, the suite uses those servers (creating its
own database `pipeline_test` on that PostgreSQL); with neither set, it starts the private
servers from wheels under var/test, as `make run` does. Pure unit tests under tests/unit
use none of this.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from stack.databases import scratch_services
from tests.helpers import wait_job

ROOT = Path(__file__).resolve().parents[1]
# One database per concurrent test run; PIPELINE_TEST_DATABASE keeps parallel runs apart.
TEST_DATABASE = os.environ.get("PIPELINE_TEST_DATABASE", "pipeline_test")
WORKER_READY_SECONDS = 60


@pytest.fixture(scope="session")
def service_env() -> Iterator[dict[str, str]]:
    """DATABASE_URL and CELERY_BROKER_URL of the servers this test session uses."""
    with scratch_services(ROOT / "var" / "test", TEST_DATABASE) as env:
        # The progress tests watch events of five-record jobs.
        yield {**env, "PROGRESS_EVENT_MIN_RECORDS": "0"}


@pytest.fixture(scope="session")
def settings(service_env: dict[str, str]):  # type: ignore[no-untyped-def]
    """Settings pointing at the test servers."""
    from tasks.settings import Settings

    return Settings.from_env({**os.environ, **service_env})


@pytest.fixture(scope="session")
def app(settings):  # type: ignore[no-untyped-def]
    """The Flask app, built by the factory against the test servers."""
    from webapp import create_app

    yield create_app({"SETTINGS": settings, "TESTING": True})


@pytest.fixture(scope="session")
def engine(app) -> Engine:  # type: ignore[no-untyped-def]
    """The SQLAlchemy engine on the test database, schema created."""
    from tasks.storage import db

    return db.get_engine()


def start_worker(env: dict[str, str], log_path: Path, concurrency: int = 2,
                 extra_args: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    """A real Celery worker process consuming both queues; waits until it is ready."""
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "webapp.make_celery", "worker",
         "-Q", "pipeline,store", "-c", str(concurrency), "--loglevel=INFO",
         "--without-mingle", "--without-gossip", "-n", f"test-{uuid.uuid4().hex[:8]}@%h",
         *extra_args],
        cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + WORKER_READY_SECONDS
    while b" ready." not in log_path.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_worker(process)
            raise RuntimeError(f"worker did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.1)
    return process


def stop_worker(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
                timeout: float = 30) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@pytest.fixture(scope="session")
def worker(service_env: dict[str, str], app, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A Celery worker process (2 children) for the whole session."""
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    process = start_worker(service_env, log_path)
    yield process
    stop_worker(process)


@pytest.fixture
def client(app, worker):  # type: ignore[no-untyped-def]
    """A test client of the app, with a live worker behind it."""
    return app.test_client()


@pytest.fixture
def clean_tables(engine: Engine) -> Iterator[None]:
    """Empty every data table before the test, once jobs of earlier tests have finished."""
    from tasks.storage.schema import DATA_TABLES

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            unfinished = conn.execute(text(
                "SELECT count(*) FROM pipeline_jobs WHERE status IN ('queued', 'running')"
            )).scalar_one()
        if not unfinished:
            break
        time.sleep(0.05)
    names = ", ".join(f'"{name}"' for name in DATA_TABLES)  # names from declarations
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names}"))
    yield


@pytest.fixture
def celery_events(app):  # type: ignore[no-untyped-def]
    """Every Celery event on the broker while the test runs, as Flower receives them."""
    celery_app = app.extensions["celery"]
    received: list[dict[str, Any]] = []
    with celery_app.connection_for_read() as conn:
        receiver = celery_app.events.Receiver(conn, handlers={"*": received.append})
        thread = threading.Thread(target=receiver.capture, daemon=True,
                                  kwargs={"limit": None, "timeout": None, "wakeup": False})
        thread.start()
        # Events go only to receivers already listening: wait until a probe comes back.
        deadline = time.monotonic() + 15
        with celery_app.events.default_dispatcher() as dispatcher:
            while not any(e.get("uuid") == "probe" for e in received):
                assert time.monotonic() < deadline, "event receiver did not start"
                dispatcher.send("probe", uuid="probe")
                time.sleep(0.2)
        yield received
        receiver.should_stop = True
        thread.join(10)


@pytest.fixture
def job_waiter(client):  # type: ignore[no-untyped-def]
    """wait(job_id): long-poll a job until it finishes."""
    return lambda job_id, timeout=30.0: wait_job(client, job_id, timeout)


@pytest.fixture
def run_job(client):  # type: ignore[no-untyped-def]
    """POST a body to a pipeline endpoint, assert 202, and return the finished job."""

    def run(endpoint: str, body: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        response = client.post(f"/api/v1/data_pipeline/{endpoint}", json=body)
        assert response.status_code == 202, response.get_json()
        return wait_job(client, response.get_json()["job_id"], timeout)

    return run


@pytest.fixture
def retrieve(client):  # type: ignore[no-untyped-def]
    """POST /retrieve and return its `result`, asserting 200."""

    def query(body: dict[str, Any]) -> dict[str, Any]:
        response = client.post("/api/v1/data_pipeline/retrieve", json=body)
        assert response.status_code == 200, response.get_json()
        return response.get_json()["result"]

    return query
