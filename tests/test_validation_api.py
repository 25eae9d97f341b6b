"""Validation through the API and workers: quarantine, listing, replay, reject_batch."""

from __future__ import annotations

import pytest

from tests.test_api_errors import assert_error

GOOD = {"campaign_id": "v-1", "spend": "10", "impressions": 100, "clicks": 5,
        "date": "2025-01-15", "account_id": "acc-v"}


def body(records: list[dict], rules: dict | None = None) -> dict:
    out = {"source": "generic", "data_type": "campaign_performance",
           "data": {"records": records}}
    if rules is not None:
        out["validation_rules"] = rules
    return out


def stored(retrieve, account: str = "acc-v") -> list[dict]:  # type: ignore[no-untyped-def]
    return retrieve({"data_type": "campaign_performance", "filters": {"account_id": account},
                     "sort": ["campaign_id"]})["records"]


@pytest.mark.usefixtures("clean_tables")
def test_invalid_records_are_quarantined_listed_and_replayed_once(client, run_job, retrieve,
                                                                  job_waiter):
    records = [
        GOOD,
        {**GOOD, "campaign_id": "v-2", "spend": "-3"},                 # non-negative
        {**GOOD, "campaign_id": "v-3", "clicks": 500},                 # clicks > impressions
        {**GOOD, "campaign_id": None},                                 # required
        {**GOOD, "campaign_id": "v-5", "impressions": "lots"},         # type
    ]
    rules = {"rules": [{"rule": "compare", "left": "clicks", "op": "<=",
                        "right": "impressions"}]}
    job = run_job("ingest", body(records, rules))
    assert job["status"] == "succeeded"
    validate = job["stages"][1]["result"]
    assert validate["validation_passed"] is False
    assert validate["invalid_count"] == 4 and validate["valid_count"] == 1
    assert validate["issues_found"] == 4
    assert validate["element_count"] == 5
    assert set(validate["statistics"]) >= {"evaluated_expectations", "success_percent"}
    assert job["result"]["records_rejected"] == 4
    assert [r["campaign_id"] for r in stored(retrieve)] == ["v-1"]

    listing = client.get(f"/api/v1/jobs/{job['job_id']}/rejected?limit=3").get_json()
    assert listing["total_count"] == 4 and listing["records_count"] == 3
    assert listing["next_offset"] == 3
    rest = client.get(f"/api/v1/jobs/{job['job_id']}/rejected?limit=3&offset=3").get_json()
    rejected = listing["records"] + rest["records"]
    assert [r["record_index"] for r in rejected] == [1, 2, 3, 4]
    reasons = {r["record_index"]: {x["rule"] for x in r["reasons"]} for r in rejected}
    assert "non_negative" in reasons[1] and "compare" in reasons[2]
    assert "required" in reasons[3] and "type" in reasons[4]
    assert rejected[0]["record"]["spend"] == "-3"  # the record as it came
    assert all(r["stage"] == "validate" and r["replayed_by"] is None for r in rejected)

    corrected = [{**GOOD, "campaign_id": "v-2"}, {**GOOD, "campaign_id": "v-3", "clicks": 50},
                 {**GOOD, "campaign_id": "v-4"}, {**GOOD, "campaign_id": "v-5"}]
    response = client.post(f"/api/v1/jobs/{job['job_id']}/rejected/replay",
                           json={"records": corrected})
    assert response.status_code == 202
    replay = job_waiter(response.get_json()["job_id"])
    assert replay["status"] == "succeeded" and replay["result"]["inserted"] == 4
    assert [r["campaign_id"] for r in stored(retrieve)] == ["v-1", "v-2", "v-3", "v-4", "v-5"]

    again = client.post(f"/api/v1/jobs/{job['job_id']}/rejected/replay",
                        json={"records": corrected})
    error = assert_error(again, 409)
    assert error["details"]["replayed_by"] == [replay["job_id"]]
    listing = client.get(f"/api/v1/jobs/{job['job_id']}/rejected").get_json()
    assert {r["replayed_by"] for r in listing["records"]} == {replay["job_id"]}
    assert len(stored(retrieve)) == 5  # nothing stored twice


@pytest.mark.usefixtures("clean_tables")
def test_reject_batch_fails_the_job_and_stores_nothing(client, run_job, retrieve):
    records = [GOOD, {**GOOD, "campaign_id": "v-9", "spend": "-1"}]
    job = run_job("ingest", body(records, {"on_invalid": "reject_batch"}))
    assert job["status"] == "failed"
    assert job["error"]["code"] == "validation_failed"
    assert "reject_batch" in job["error"]["message"]
    assert [s["status"] for s in job["stages"]] == ["succeeded", "failed", "pending", "pending"]
    assert stored(retrieve) == []
    listing = client.get(f"/api/v1/jobs/{job['job_id']}/rejected").get_json()
    assert listing["total_count"] == 1


@pytest.mark.usefixtures("clean_tables")
def test_warnings_and_tolerance_let_records_through(run_job, retrieve):
    records = [{**GOOD, "campaign_id": f"w-{i}", "spend": str(i)} for i in range(10)]
    rules = {"on_invalid": "reject_batch", "rules": [
        {"rule": "range", "field": "spend", "max": 5, "severity": "warn"},
        {"rule": "regex", "field": "campaign_id", "pattern": "^w-[0-8]$", "mostly": 0.8},
    ]}
    job = run_job("ingest", body(records, rules))
    assert job["status"] == "succeeded", job["error"]
    result = job["stages"][1]["result"]
    assert result["validation_passed"] is True
    by_rule = {r["rule"]: r for r in result["rules"] if r["rule"] in ("range", "regex")}
    assert by_rule["range"]["unexpected_count"] == 4 and by_rule["range"]["success"] is False
    assert by_rule["regex"]["unexpected_count"] == 1 and by_rule["regex"]["success"] is True
    # The warn rule keeps its records; the one record failing the fail rule is quarantined.
    assert len(stored(retrieve)) == 9


def test_replay_of_an_unknown_job_is_404_and_empty_records_422(client, run_job):
    missing = client.post("/api/v1/jobs/00000000-0000-0000-0000-000000000000/rejected/replay",
                          json={"records": [GOOD]})
    assert_error(missing, 404)
    job = run_job("ingest", body([GOOD]))
    assert_error(client.post(f"/api/v1/jobs/{job['job_id']}/rejected/replay",
                             json={"records": []}), 422)
    assert_error(client.post(f"/api/v1/jobs/{job['job_id']}/rejected/replay",
                             json={"records": [GOOD]}), 409)
