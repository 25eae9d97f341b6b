"""The seed's five endpoints with the seed's own example bodies, end to end."""

from __future__ import annotations

import copy

import pytest

SEED_RECORD = {
    "campaign_id": "123",
    "spend": 100.0,
    "impressions": 1000,
    "clicks": 50,
    "conversions": 5,
}
SEED_INGEST = {
    "source": "meta_ads",
    "data_type": "campaign_performance",
    "data": {"records": [SEED_RECORD]},
}
SEED_PROCESS = {
    "data_type": "campaign_performance",
    "data": {"records": [SEED_RECORD]},
    "processing_options": {"calculate_metrics": True, "enrich_with_audience_data": True},
}
SEED_VALIDATE = {
    "data_type": "campaign_performance",
    "data": {"records": [SEED_RECORD]},
    "validation_rules": {
        "required_fields": ["campaign_id", "spend", "impressions", "clicks", "conversions"],
        "numeric_fields": ["spend", "impressions", "clicks", "conversions"],
    },
}
SEED_STORE = {
    "data_type": "campaign_performance",
    "data": {"records": [SEED_RECORD]},
    "storage_options": {"table_name": "campaign_performance", "upsert": True},
}
SEED_RETRIEVE = {
    "data_type": "campaign_performance",
    "filters": {"campaign_id": "123", "date_range": {"start": "2023-10-01", "end": "2023-10-31"}},
    "limit": 100,
    "offset": 0,
}
ISO_UTC = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"


def test_ingest_answers_202_with_a_job(client, job_waiter):
    response = client.post("/api/v1/data_pipeline/ingest", json=SEED_INGEST)
    assert response.status_code == 202
    body = response.get_json()
    assert body["success"] is True
    assert body["status"] == "queued"
    assert body["data_type"] == "campaign_performance"
    assert body["source"] == "meta_ads"
    assert body["result"] == {"records_count": 1, "status": "queued"}
    assert body["status_url"] == f"/api/v1/jobs/{body['job_id']}"
    assert response.headers["Location"] == body["status_url"]
    assert job_waiter(body["job_id"])["status"] == "succeeded"


@pytest.mark.usefixtures("clean_tables")
def test_seed_ingest_runs_the_chain_and_retrieve_returns_the_metrics(run_job, retrieve):
    job = run_job("ingest", SEED_INGEST)

    assert job["status"] == "succeeded", job
    assert [s["name"] for s in job["stages"]] == ["ingest", "validate", "process", "store"]
    assert all(s["status"] == "succeeded" for s in job["stages"])
    assert all(s["records_in"] == 1 and s["records_out"] == 1 for s in job["stages"])
    stages = {s["name"]: s["result"] for s in job["stages"]}
    assert stages["ingest"]["records_count"] == 1
    assert stages["ingest"]["status"] == "success"
    assert stages["validate"]["validation_passed"] is True
    assert stages["validate"]["issues_found"] == 0
    assert stages["process"]["records_count"] == 1
    assert stages["store"]["records_count"] == 1
    assert stages["store"]["inserted"] == 1
    for name, field in (("ingest", "ingested_at"), ("validate", "validated_at"),
                        ("process", "processed_at"), ("store", "stored_at")):
        assert stages[name][field].endswith("Z")
    assert job["finished_at"] is not None and job["error"] is None

    result = retrieve({"data_type": "campaign_performance", "filters": {"campaign_id": "123"}})
    assert result["total_count"] == 1
    record = result["records"][0]
    assert record["source"] == "meta_ads"
    assert record["spend"] == 100.0
    assert record["impressions"] == 1000 and record["clicks"] == 50
    assert record["ctr"] == 0.05
    assert record["cpc"] == 2.0
    assert record["cpm"] == 100.0
    assert record["cpa"] == 20.0
    assert record["conversion_rate"] == 0.1
    assert record["roas"] is None
    assert record["job_id"] == job["job_id"]


@pytest.mark.usefixtures("clean_tables")
def test_posting_the_same_record_again_updates_one_row(run_job, retrieve):
    first = run_job("ingest", SEED_INGEST)
    changed = copy.deepcopy(SEED_INGEST)
    changed["data"]["records"][0]["spend"] = 150.0
    second = run_job("ingest", changed)
    assert first["status"] == second["status"] == "succeeded"
    assert second["result"]["updated"] == 1 and second["result"]["inserted"] == 0

    result = retrieve({"data_type": "campaign_performance", "filters": {"campaign_id": "123"}})
    assert result["total_count"] == 1
    record = result["records"][0]
    assert record["spend"] == 150.0
    assert record["cpc"] == 3.0
    assert record["job_id"] == second["job_id"]


def test_the_jobs_result_accounts_for_every_record_received(run_job):
    """Stored, rejected, or removed as a duplicate of a later record with the same key:
    the top-level result says which, so no record looks silently dropped."""
    body = copy.deepcopy(SEED_INGEST)
    first = body["data"]["records"][0]
    body["data"]["records"] = [
        {**first, "campaign_id": "acct-1"}, {**first, "campaign_id": "acct-1", "spend": 2.0},
        {**first, "campaign_id": "acct-2", "clicks": -5}]
    job = run_job("ingest", body)
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["records_received"] == 3
    assert (result["inserted"] + result["updated"], result["records_rejected"],
            result["duplicates_removed"]) == (1, 1, 1)


def test_seed_validate_runs_only_validation(run_job):
    job = run_job("validate", SEED_VALIDATE)
    assert job["status"] == "succeeded"
    assert [s["name"] for s in job["stages"]] == ["validate"]
    result = job["stages"][0]["result"]
    assert result["validation_passed"] is True
    assert result["issues_found"] == 0
    assert result["status"] == "success"


def test_seed_process_runs_only_processing(run_job, retrieve):
    job = run_job("process", SEED_PROCESS)
    assert job["status"] == "succeeded", job
    assert [s["name"] for s in job["stages"]] == ["process"]
    assert job["result"]["records_count"] == 1
    assert job["result"]["status"] == "success"
    assert job["result"]["processed_at"].endswith("Z")


@pytest.mark.usefixtures("clean_tables")
def test_seed_store_stores_the_record_as_given(run_job, retrieve):
    job = run_job("store", SEED_STORE)
    assert job["status"] == "succeeded", job
    assert [s["name"] for s in job["stages"]] == ["store"]
    assert job["result"]["records_count"] == 1
    assert job["result"]["stored_at"].endswith("Z")
    again = run_job("store", SEED_STORE)
    assert again["result"]["updated"] == 1

    result = retrieve({"data_type": "campaign_performance", "filters": {"campaign_id": "123"}})
    assert result["total_count"] == 1
    assert result["records"][0]["spend"] == 100.0
    assert result["records"][0]["ctr"] is None  # store does not compute metrics


@pytest.mark.usefixtures("clean_tables")
def test_seed_retrieve_body_works_and_pages(run_job, client):
    run_job("ingest", {
        "source": "meta_ads", "data_type": "campaign_performance",
        "data": {"records": [
            {**SEED_RECORD, "date": f"2023-10-{day:02d}"} for day in range(1, 31)
        ] + [{**SEED_RECORD, "date": "2023-11-01"}]},
    })
    response = client.post("/api/v1/data_pipeline/retrieve", json=SEED_RETRIEVE)
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is True and body["data_type"] == "campaign_performance"
    result = body["result"]
    assert result["status"] == "success"
    assert result["total_count"] == 30  # November's row is outside the date_range
    assert result["records_count"] == 30
    assert result["next_offset"] is None

    page = client.post("/api/v1/data_pipeline/retrieve", json={
        **SEED_RETRIEVE, "limit": 10, "offset": 10, "sort": ["date"]}).get_json()["result"]
    assert [r["date"] for r in page["records"]] == [f"2023-10-{d:02d}" for d in range(11, 21)]
    assert page["next_offset"] == 20


def test_unknown_job_is_404(client):
    for job_id in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        response = client.get(f"/api/v1/jobs/{job_id}")
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "not_found"
