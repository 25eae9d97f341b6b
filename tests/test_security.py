"""API keys, request limits and idempotency keys, against the real stack."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest
from sqlalchemy import func, select

from tasks.storage import jobs
from tasks.storage.schema import jobs_table
from tests.test_api_errors import assert_error
from tests.test_seed_api import SEED_INGEST, SEED_RECORD

KEYS = ("first-key-0123456789", "second-key-abcdefghij")


@pytest.fixture(scope="module")
def locked_app(settings, worker):  # type: ignore[no-untyped-def]
    """An app with API keys and small limits, sharing the test servers and worker."""
    from webapp import create_app

    return create_app({"SETTINGS": replace(settings, api_keys=KEYS, max_body_bytes=64 * 1024,
                                           max_records=50)})


@pytest.fixture
def locked(locked_app):  # type: ignore[no-untyped-def]
    return locked_app.test_client()


ROUTES = [
    ("post", "/api/v1/data_pipeline/ingest"), ("post", "/api/v1/data_pipeline/validate"),
    ("post", "/api/v1/data_pipeline/process"), ("post", "/api/v1/data_pipeline/store"),
    ("post", "/api/v1/data_pipeline/retrieve"),
    ("get", "/api/v1/jobs/00000000-0000-0000-0000-000000000000"),
    ("get", "/api/v1/jobs/00000000-0000-0000-0000-000000000000/rejected"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "first-key-012345678"},
    {"Authorization": "Basic Zmlyc3Qta2V5LTAxMjM0NTY3ODk="},
])
def test_every_api_route_needs_a_key(locked, method, path, headers):
    response = getattr(locked, method)(path, json=SEED_INGEST, headers=headers)
    assert_error(response, 401, "unauthorized")


@pytest.mark.parametrize("headers", [
    {"Authorization": f"Bearer {KEYS[0]}"}, {"authorization": f"bearer {KEYS[1]}"},
    {"X-API-Key": KEYS[1]},
])
def test_a_valid_key_in_either_header_is_accepted(locked, headers, job_waiter):
    response = locked.post("/api/v1/data_pipeline/ingest", json=SEED_INGEST, headers=headers)
    assert response.status_code == 202
    job = locked.get(response.get_json()["status_url"] + "?wait=10", headers=headers)
    assert job.get_json()["status"] == "succeeded"


def test_health_checks_need_no_key(locked):
    assert locked.get("/healthz").status_code == 200


def test_body_over_the_size_limit_is_413(locked):
    big = {**SEED_INGEST, "data": {"records": [{"campaign_id": "x" * 70_000}]}}
    response = locked.post("/api/v1/data_pipeline/ingest", json=big,
                           headers={"X-API-Key": KEYS[0]})
    error = assert_error(response, 413, "payload_too_large")
    assert "65536 bytes" in error["message"]


def test_too_many_records_is_413_naming_the_limit(locked):
    body = {**SEED_INGEST, "data": {"records": [SEED_RECORD] * 51}}
    response = locked.post("/api/v1/data_pipeline/ingest", json=body,
                           headers={"X-API-Key": KEYS[0]})
    error = assert_error(response, 413)
    assert "limit is 50" in error["message"] and error["details"] == {"limit": 50}


def _job_count(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(jobs_table)).scalar_one()


def test_idempotency_key_returns_the_same_job(client, engine, job_waiter):
    headers = {"Idempotency-Key": "order-2025-01-15-a"}
    first = client.post("/api/v1/data_pipeline/ingest", json=SEED_INGEST, headers=headers)
    before = _job_count(engine)
    second = client.post("/api/v1/data_pipeline/ingest", json=SEED_INGEST, headers=headers)
    assert first.status_code == second.status_code == 202
    assert second.get_json()["job_id"] == first.get_json()["job_id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert _job_count(engine) == before
    job_waiter(first.get_json()["job_id"])


def test_idempotency_key_with_another_body_is_409(client, job_waiter):
    headers = {"Idempotency-Key": "order-2025-01-15-b"}
    first = client.post("/api/v1/data_pipeline/ingest", json=SEED_INGEST, headers=headers)
    assert first.status_code == 202
    other = {**SEED_INGEST, "data": {"records": [{**SEED_RECORD, "spend": 1.0}]}}
    response = client.post("/api/v1/data_pipeline/ingest", json=other, headers=headers)
    error = assert_error(response, 409, "conflict")
    assert error["details"]["job_id"] == first.get_json()["job_id"]
    job_waiter(first.get_json()["job_id"])


@pytest.mark.parametrize("key", ["k\x00", "tab\there", "x" * 201, " "])
def test_an_idempotency_key_that_is_not_printable_text_is_422(client, engine, key):
    before = _job_count(engine)
    response = client.post("/api/v1/data_pipeline/ingest", json=SEED_INGEST,
                           headers={"Idempotency-Key": key})
    assert assert_error(response, 422, "invalid_request")["details"] == {
        "field": "Idempotency-Key"}
    assert _job_count(engine) == before


def test_the_same_key_at_once_from_8_clients_makes_one_job(app, engine, job_waiter):
    headers = {"Idempotency-Key": "concurrent-key-1"}
    before = _job_count(engine)
    answers: list = []

    def post() -> None:
        with app.test_client() as own:
            answers.append(own.post("/api/v1/data_pipeline/ingest", json=SEED_INGEST,
                                    headers=headers))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [r.status_code for r in answers] == [202] * 8
    assert len({r.get_json()["job_id"] for r in answers}) == 1
    assert _job_count(engine) == before + 1
    job_waiter(answers[0].get_json()["job_id"])


def test_workers_accept_json_only_never_pickle(app, engine, worker, job_waiter):
    """A pickled message to a stage task is refused; the same message as JSON runs."""
    import pickle

    from kombu import Producer

    from tasks.celery_app import make_celery
    from tasks.submit import accept

    celery_app = app.extensions["celery"]
    parked = make_celery(app.config["SETTINGS"])
    parked.conf.task_routes = {}
    parked.conf.task_default_queue = "parked"  # accepted, but its message goes nowhere
    job = accept(engine, parked, kind="store", stages=("store",), data_type="campaign_performance",
                 source=None, data={"records": [{"campaign_id": "pickled"}]}, records_count=1)
    with parked.connection_for_write() as conn:
        conn.default_channel.client.delete("parked")

    def send(serializer: str) -> None:
        body = ([job["id"]], {}, {"callbacks": None, "errbacks": None, "chain": None,
                                  "chord": None})
        headers = {"lang": "py", "task": "storage.store", "id": f"t-{serializer}",
                   "argsrepr": "", "kwargsrepr": "", "origin": "test"}
        with celery_app.connection_for_write() as conn:
            producer = Producer(conn)
            if serializer == "pickle":
                producer.publish(pickle.dumps(body), routing_key="store", exchange="store",
                                 headers=headers, content_type="application/x-python-serialize",
                                 content_encoding="binary")
            else:
                producer.publish(body, routing_key="store", exchange="store", headers=headers,
                                 serializer="json")

    send("pickle")
    time.sleep(2)
    with engine.connect() as conn:
        assert jobs.get(conn, job["id"])["status"] == "queued"  # never ran
    send("json")
    assert job_waiter(job["id"])["status"] == "succeeded"
