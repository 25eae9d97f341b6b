"""SQL injection attempts anywhere in a request are harmless: refused by name checks, or
bound as plain values. The table is still there with all its rows afterwards."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.test_retrieve import URL, campaign_rows
from tests.test_storage_upsert import store_rows

ATTACKS = [
    "campaign_performance; DROP TABLE campaign_performance; --",
    "'; DROP TABLE campaign_performance; --",
    "\" OR 1=1 --",
    "spend) FROM campaign_performance; DELETE FROM campaign_performance; --",
    "id; TRUNCATE campaign_performance",
    "1 UNION SELECT usename, passwd FROM pg_shadow",
    "pg_sleep(10)",
    "-spend; DROP TABLE pipeline_jobs",
    "campaign_id\" DESC, (SELECT 1/0) --",
]


@pytest.fixture
def campaigns(engine, clean_tables):  # type: ignore[no-untyped-def]
    store_rows(engine, campaign_rows())
    return len(campaign_rows())


@pytest.fixture
def intact(engine, campaigns):  # type: ignore[no-untyped-def]
    """After the test: the data and job tables exist and every row is still there."""
    yield
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM campaign_performance")).scalar_one() \
            == campaigns
        conn.execute(text("SELECT count(*) FROM pipeline_jobs")).scalar_one()


def _post(client, body: dict) -> dict:  # type: ignore[no-untyped-def]
    response = client.post(URL, json={"data_type": "campaign_performance", **body})
    assert response.status_code in (200, 422), response.get_data(as_text=True)
    return response.get_json()


@pytest.mark.usefixtures("intact")
@pytest.mark.parametrize("attack", ATTACKS)
def test_attacks_in_values_are_bound_not_run(client, attack):
    for filters in ({"campaign_id": attack}, {"campaign_id": [attack, "c1"]},
                    {"campaign_name": {"ne": attack, "gte": attack}},
                    {"date_range": {"start": attack}}, {"spend": {"lt": attack}}):
        body = _post(client, {"filters": filters})
        if body["success"]:  # a text value: it matched nothing, or only real rows
            assert all(r["campaign_id"] != attack for r in body["result"]["records"])


@pytest.mark.usefixtures("intact")
@pytest.mark.parametrize("attack", ATTACKS)
def test_attacks_in_names_are_refused(client, attack):
    for body in ({"filters": {attack: "1"}}, {"fields": [attack]}, {"sort": [attack]},
                 {"group_by": [attack], "metrics": ["spend"]},
                 {"group_by": ["campaign_id"], "metrics": [attack]},
                 {"data_type": attack}, {"cursor": attack}):
        answer = _post(client, body)
        assert answer["success"] is False and answer["error"]["code"] == "invalid_request"


@pytest.mark.usefixtures("intact")
@pytest.mark.parametrize("attack", ATTACKS)
def test_attacks_in_table_names_are_refused(client, attack):
    response = client.post("/api/v1/data_pipeline/store", json={
        "data_type": "campaign_performance", "data": {"records": [{"campaign_id": "x"}]},
        "storage_options": {"table_name": attack}})
    assert response.status_code == 422
    assert response.get_json()["error"]["details"]["allowed"] == ["campaign_performance",
                                                                   "campaigns"]


@pytest.mark.usefixtures("clean_tables")
def test_attacks_stored_as_data_come_back_as_data(client, run_job, engine):
    attack = ATTACKS[1]
    job = run_job("ingest", {"source": "generic", "data_type": "campaign_performance", "data": {
        "records": [{"campaign_id": attack, "campaign_name": attack, attack: attack}]}})
    assert job["status"] == "succeeded", job
    found = _post(client, {"filters": {"campaign_id": attack}})["result"]["records"]
    assert len(found) == 1 and found[0]["campaign_name"] == attack
    assert found[0]["extra"][attack] == attack
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM campaign_performance")).scalar_one() == 1


def test_retrieval_runs_read_only_with_a_time_limit(engine, client, monkeypatch):
    from tasks.storage import retrieve as retrieval
    from webapp.views import retrieve as view

    with retrieval.read_only(engine) as conn:
        assert conn.exec_driver_sql("SHOW transaction_read_only").scalar() == "on"
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "30s"

    def slow(conn, *args, **kwargs):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("SELECT pg_sleep(2)")

    monkeypatch.setattr(retrieval, "STATEMENT_TIMEOUT_MS", 50)
    monkeypatch.setattr(view, "retrieve", slow)
    response = client.post(URL, json={"data_type": "campaign_performance"})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "query_timeout"
