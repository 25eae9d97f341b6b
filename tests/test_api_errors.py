"""Bad input gets the contract's JSON error shape with the right status, never a 500."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.helpers import wait_job
from tests.test_seed_api import SEED_INGEST

ENDPOINTS = ("ingest", "validate", "process", "store")


def assert_error(response, status: int, code: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["success"] is False
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    return body["error"]


@pytest.mark.parametrize("endpoint", [*ENDPOINTS, "retrieve"])
def test_malformed_json_is_400(client, endpoint):
    response = client.post(f"/api/v1/data_pipeline/{endpoint}", data=b'{"data_type": ',
                           content_type="application/json")
    error = assert_error(response, 400, "bad_request")
    assert "malformed JSON" in error["message"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_missing_data_type_is_422_naming_the_field(client, endpoint):
    response = client.post(f"/api/v1/data_pipeline/{endpoint}",
                           json={"data": {"records": []}})
    error = assert_error(response, 422, "invalid_request")
    assert "data_type" in error["details"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_unknown_data_type_is_422_listing_the_known_ones(client, endpoint):
    response = client.post(f"/api/v1/data_pipeline/{endpoint}",
                           json={"data_type": "nope", "data": {"records": []}})
    error = assert_error(response, 422)
    assert error["details"]["field"] == "data_type"
    assert "campaign_performance" in error["details"]["allowed"]


@pytest.mark.parametrize("records", ["x", 5, None, {"a": 1}])
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_records_not_a_list_is_422(client, endpoint, records):
    response = client.post(f"/api/v1/data_pipeline/{endpoint}",
                           json={"data_type": "campaign_performance",
                                 "data": {"records": records}})
    error = assert_error(response, 422)
    assert "records" in error["message"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_records_not_objects_is_422_naming_the_record(client, endpoint):
    response = client.post(f"/api/v1/data_pipeline/{endpoint}",
                           json={"data_type": "campaign_performance",
                                 "data": {"records": [{"campaign_id": "1"}, 7]}})
    error = assert_error(response, 422)
    if endpoint != "ingest":
        assert error["details"]["field"] == "data.records[1]"


@pytest.mark.parametrize("data", ["text", 3, None])
def test_data_not_an_object_is_422(client, data):
    response = client.post("/api/v1/data_pipeline/ingest",
                           json={"data_type": "campaign_performance", "data": data})
    error = assert_error(response, 422)
    assert "data" in str(error["details"])


def test_unknown_top_level_field_is_422_naming_it(client):
    response = client.post("/api/v1/data_pipeline/ingest", json={**SEED_INGEST, "colour": 1})
    error = assert_error(response, 422)
    assert "colour" in error["details"]


def test_body_that_is_not_an_object_is_422(client):
    assert_error(client.post("/api/v1/data_pipeline/ingest", json=[1, 2]), 422)


def test_wrong_media_type_is_415(client):
    response = client.post("/api/v1/data_pipeline/ingest", data="campaign_id=1",
                           content_type="application/x-www-form-urlencoded")
    assert_error(response, 415, "unsupported_media_type")


def test_unknown_route_and_method_are_json(client):
    assert_error(client.get("/api/v1/nothing-here"), 404, "not_found")
    assert_error(client.get("/api/v1/data_pipeline/ingest"), 405, "method_not_allowed")


def test_bad_table_name_is_422(client):
    response = client.post("/api/v1/data_pipeline/store", json={
        "data_type": "campaign_performance", "data": {"records": [{"campaign_id": "1"}]},
        "storage_options": {"table_name": "pg_user; DROP TABLE campaign_performance"},
    })
    error = assert_error(response, 422)
    assert error["details"]["allowed"] == ["campaign_performance", "campaigns"]


def test_unknown_retrieve_filter_is_422_listing_the_allowed(client):
    response = client.post("/api/v1/data_pipeline/retrieve", json={
        "data_type": "campaign_performance", "filters": {"colour": "red"}})
    error = assert_error(response, 422)
    assert error["details"]["field"] == "colour"
    assert "campaign_id" in error["details"]["allowed"]


def test_retrieve_filter_of_the_wrong_type_is_422(client):
    response = client.post("/api/v1/data_pipeline/retrieve", json={
        "data_type": "campaign_performance", "filters": {"impressions": "many"}})
    assert_error(response, 422)


def test_retrieve_limit_over_the_maximum_is_422(client):
    response = client.post("/api/v1/data_pipeline/retrieve", json={
        "data_type": "campaign_performance", "limit": 100000})
    error = assert_error(response, 422)
    assert "limit" in error["details"]


def test_bad_wait_parameter_is_422(client):
    response = client.get("/api/v1/jobs/00000000-0000-0000-0000-000000000000?wait=forever")
    assert_error(response, 422)


def test_health_endpoints(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"database": "ok", "broker": "ok"}


@pytest.mark.parametrize("options", [
    {"calculate_metrics": "yes"}, {"colour": True}, {"target_currency": "euro"},
])
def test_bad_processing_options_are_422(client, options):
    response = client.post("/api/v1/data_pipeline/process", json={
        "data_type": "campaign_performance", "data": {"records": [{"campaign_id": "1"}]},
        "processing_options": options})
    assert_error(response, 422)


def test_unknown_validation_rule_is_422_listing_the_known_rules(client):
    response = client.post("/api/v1/data_pipeline/validate", json={
        "data_type": "campaign_performance", "data": {"records": [{"campaign_id": "1"}]},
        "validation_rules": {"rules": [{"rule": "sparkle", "field": "spend"}]}})
    error = assert_error(response, 422)
    assert "range" in error["details"]["known_rules"]


def _nested(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_record_nested_deeper_than_json_storage_allows_is_422(client, endpoint):
    record = {"campaign_id": "deep", "x": _nested(300)}
    response = client.post(f"/api/v1/data_pipeline/{endpoint}", json={
        "data_type": "campaign_performance", "data": {"records": [record]}})
    error = assert_error(response, 422, "invalid_request")
    assert "nest" in error["message"]


def test_an_ndjson_line_nested_too_deeply_is_422(client):
    line = b'{"campaign_id": "deep", "x": ' + b"[" * 300 + b"]" * 300 + b"}"
    response = client.post("/api/v1/data_pipeline/ingest?data_type=campaign_performance",
                           data=line + b"\n", content_type="application/x-ndjson")
    assert_error(response, 422, "invalid_request")


def test_numbers_wider_than_64_bits_in_stored_json_are_answered(client):
    """jsonb keeps 1e20 as 100000000000000000000, which orjson cannot write: the job,
    its quarantine and the stored rows are still answered, the numbers exact."""
    response = client.post("/api/v1/data_pipeline/ingest", json={
        "data_type": "crm_contacts", "data": {"records": [
            {"contact_id": "wide-1", "email": "a@example.com", "score_note": 1e20},
            {"contact_id": "wide-2", "created_at": 1e20}]}})
    assert response.status_code == 202, response.get_json()
    job = wait_job(client, response.get_json()["job_id"])
    assert job["status"] == "succeeded", job
    rejected = client.get(f"/api/v1/jobs/{job['job_id']}/rejected")
    assert rejected.status_code == 200, rejected.get_data(as_text=True)
    retrieved = client.post("/api/v1/data_pipeline/retrieve", json={
        "data_type": "crm_contacts", "filters": {"contact_id": "wide-1"}})
    assert retrieved.status_code == 200, retrieved.get_data(as_text=True)
    assert b'"score_note":100000000000000000000' in retrieved.get_data()


def test_a_key_too_long_for_its_index_is_quarantined_with_its_record(client):
    """A btree index row holds about 2.7 kB: a longer key failed the store of the whole
    batch. The declaration's rules limit each text column of the natural key."""
    too_long = os.urandom(6000).hex()
    response = client.post("/api/v1/data_pipeline/ingest", json={
        "data_type": "crm_contacts", "data": {"records": [
            {"contact_id": too_long}, {"contact_id": "short-key"}]}})
    assert response.status_code == 202, response.get_json()
    job = wait_job(client, response.get_json()["job_id"])
    assert job["status"] == "succeeded", job
    assert job["result"]["records_rejected"] == 1
    rejected = client.get(f"/api/v1/jobs/{job['job_id']}/rejected").get_json()
    [record] = rejected["records"]
    assert "length of contact_id must be <= 256" in str(record["reasons"])


def test_a_key_too_long_for_its_index_fails_a_store_job_at_once_saying_so(client):
    """Without validation (POST /store), PostgreSQL refuses the key with a program-limit
    error, which psycopg2 raises as an OperationalError, like an outage: the same data
    would fail every retry, so the job fails at once with the server's reason (it was
    retried for two minutes, then called the database unavailable)."""
    too_long = os.urandom(6000).hex()  # random: the index cannot compress it under 2.7 kB
    response = client.post("/api/v1/data_pipeline/store", json={
        "data_type": "crm_contacts", "data": {"records": [{"contact_id": too_long}]}})
    assert response.status_code == 202, response.get_json()
    job = wait_job(client, response.get_json()["job_id"], timeout=20)
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "value_too_large"
    assert "index row" in job["error"]["message"]
