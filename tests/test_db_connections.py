"""The API's pooled connections: pinged only once idle for a while, and a dead one that a
request meets is a 503 in the error shape, never a 500; the next request gets a new one."""

from __future__ import annotations

import time

import psycopg2
import pytest
from sqlalchemy import text

from tasks.storage import db, jobs
from tests.helpers import close_job, stored_job


@pytest.fixture
def job_id(engine):  # type: ignore[no-untyped-def]
    job = stored_job(engine, [{"campaign_id": "conn-1"}], ["ingest"])
    yield job
    close_job(engine, job)


def _kill_the_pooled_connection() -> None:
    """Leave one connection in the pool job reads use (the autocommit one) and end its
    server process behind its back."""
    engine = db.autocommit_engine()
    engine.dispose()
    with engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    url = engine.url
    killer = psycopg2.connect(host=url.host, port=url.port, user=url.username,
                              password=url.password, dbname=url.database)
    killer.autocommit = True
    try:
        with killer.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))
            deadline = time.monotonic() + 10
            while True:  # the server process ends a moment after the signal
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
                if cursor.fetchone()[0] == 0:
                    break
                assert time.monotonic() < deadline
                time.sleep(0.02)
    finally:
        killer.close()


def test_one_statement_reads_have_an_autocommit_pool_of_their_own(engine):  # type: ignore[no-untyped-def]
    # Sharing the pool, a read switched a connection to autocommit and back: two more
    # round trips (a SET when it returned, a BEGIN ISOLATION LEVEL on its next use).
    reader = db.autocommit_engine()
    assert reader is db.autocommit_engine()
    assert reader.pool is not engine.pool
    with reader.connect() as conn:
        assert conn.connection.dbapi_connection.autocommit
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
    with engine.connect() as conn:
        assert not conn.connection.dbapi_connection.autocommit


def test_a_connection_idle_for_a_while_is_pinged_and_replaced(client, engine, job_id,
                                                              monkeypatch):
    _kill_the_pooled_connection()
    monkeypatch.setattr(db, "PING_IDLE_SECONDS", 0.0)  # idle long enough, however quick
    response = client.get(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 200, response.get_json()


def test_a_dead_connection_met_at_once_is_a_503_then_the_pool_recovers(client, engine,
                                                                        job_id, monkeypatch):
    monkeypatch.setattr(db, "PING_IDLE_SECONDS", 600.0)  # used again soon enough, however slow
    _kill_the_pooled_connection()
    response = client.get(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.get_json()["error"]["code"] == "service_unavailable"
    assert client.get(f"/api/v1/jobs/{job_id}").status_code == 200


def test_a_worker_statement_cannot_outlast_the_stage_time_limit(engine):  # type: ignore[no-untyped-def]
    """A worker's connections end any statement after WORKER_STATEMENT_SECONDS, under the
    task's soft time limit: a statement blocked past the hard limit was killed with its
    worker, and the sweep's next try blocked again."""
    from tasks.celery_app import celery_config
    from tasks.settings import Settings

    worker = db._create(engine.url.render_as_string(hide_password=False), pre_ping=False,
                        relaxed_commit=True)
    try:
        with worker.connect() as conn:
            timeout = conn.execute(text("SHOW statement_timeout")).scalar_one()
    finally:
        worker.dispose()
    assert timeout == f"{db.WORKER_STATEMENT_SECONDS // 60}min"
    soft_limit = celery_config(Settings.from_env({}))["task_soft_time_limit"]
    assert db.WORKER_STATEMENT_SECONDS < soft_limit


def test_json_columns_keep_what_orjson_cannot_read_or_write(engine):  # type: ignore[no-untyped-def]
    # JSON columns go through orjson (db.json_text / json_value), which stops at 64-bit
    # integers and 254 levels of nesting; the standard library takes over past that.
    wide, deep = 2**70 + 1, [[[1]]]
    for _ in range(300):
        deep = [deep]
    options = {"wide": wide, "negative": -wide, "deep": deep, "plain": 1.5, "text": "é"}
    job = stored_job(engine, [{"campaign_id": "json-1"}], ["ingest"], options=options)
    try:
        with engine.connect() as conn:
            stored = jobs.get(conn, job)["options"]  # type: ignore[index]
            as_text = conn.execute(text("SELECT options::text FROM pipeline_jobs WHERE id = :id"),
                                   {"id": job}).scalar_one()
        assert {k: stored[k] for k in options} == options
        assert str(wide) in as_text
    finally:
        close_job(engine, job)


def test_json_text_and_value_are_json_both_ways():
    assert db.json_value(db.json_text({"a": [1, 2.5, None, True], 3: "x"})) == \
        {"a": [1, 2.5, None, True], "3": "x"}
    assert db.json_value("100000000000000000000001") == 10**23 + 1
    assert db.json_value('{"n": -9223372036854775809}') == {"n": -(2**63) - 1}
    assert db.json_value('{"n": 9223372036854775807, "f": 0.5}') == {"n": 2**63 - 1, "f": 0.5}
    with pytest.raises(TypeError):
        db.json_text({"a": object()})
