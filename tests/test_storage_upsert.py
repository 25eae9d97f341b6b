"""The store stage's bulk upsert: inserted / updated / skipped counts, upsert on and off."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tasks.datatypes import CAMPAIGN_PERFORMANCE, DataType
from tasks.storage.core import store


def store_rows(engine: Engine, records: list[dict[str, Any]],
               data_type: DataType = CAMPAIGN_PERFORMANCE,
               options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the store stage core on `records` in one transaction; returns its result."""
    with engine.begin() as conn:
        output = store(conn, records, data_type, options, job_id=str(uuid.uuid4()))
    assert not output.rejected, output.rejected
    return output.result


def rows_of(engine: Engine, table: str = "campaign_performance") -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(
            f'SELECT * FROM "{table}" ORDER BY id')).mappings()]  # name is a constant


def _record(campaign: str, day: str | None, spend: str = "10") -> dict[str, Any]:
    return {"source": "meta_ads", "account_id": "acc-1", "campaign_id": campaign,
            "date": day, "spend": spend, "impressions": 1000, "clicks": 10}


@pytest.mark.usefixtures("clean_tables")
def test_upsert_inserts_then_updates_on_the_natural_key(engine):
    batch = [_record("c1", "2024-03-01"), _record("c2", "2024-03-01"), _record("c1", None)]
    first = store_rows(engine, batch)
    assert (first["inserted"], first["updated"], first["skipped"]) == (3, 0, 0)
    before = {r["campaign_id"] + str(r["date"]): r for r in rows_of(engine)}

    changed = [{**r, "spend": "99"} for r in batch] + [_record("c3", "2024-04-02")]
    second = store_rows(engine, changed, options={"table_name": "campaign_performance",
                                                  "upsert": True})
    assert (second["inserted"], second["updated"], second["skipped"]) == (1, 3, 0)
    assert second["records_count"] == 4 and second["table_name"] == "campaign_performance"
    after = rows_of(engine)
    assert len(after) == 4
    for row in after:
        assert row["spend"] == 99 or row["campaign_id"] == "c3"
        old = before.get(row["campaign_id"] + str(row["date"]))
        if old is not None:  # updated in place: same row, first ingestion time kept
            assert row["id"] == old["id"] and row["ingested_at"] == old["ingested_at"]
            assert row["updated_at"] > old["updated_at"] and row["job_id"] != old["job_id"]


@pytest.mark.usefixtures("clean_tables")
def test_upsert_false_inserts_new_keys_and_leaves_existing_rows_untouched(engine):
    store_rows(engine, [_record("c1", "2024-03-01", spend="1"), _record("c2", None, "2")])
    original = rows_of(engine)

    result = store_rows(engine, [_record("c1", "2024-03-01", spend="50"),
                                 _record("c2", None, spend="60"),
                                 _record("c9", "2024-03-05", spend="70")],
                        options={"upsert": False})
    assert (result["inserted"], result["updated"], result["skipped"]) == (1, 0, 2)
    assert result["records_count"] == 1
    rows = rows_of(engine)
    assert rows[:2] == original  # every column, lineage included, as it was
    assert rows[2]["campaign_id"] == "c9" and rows[2]["spend"] == 70


@pytest.mark.usefixtures("clean_tables")
def test_duplicates_in_a_batch_last_one_wins(engine):
    result = store_rows(engine, [_record("c1", "2024-03-01", "1"),
                                 _record("c1", "2024-03-01", "2"),
                                 _record("c1", "2024-03-01", "3")])
    assert result["inserted"] == 1 and result["duplicates_in_batch"] == 2
    assert [r["spend"] for r in rows_of(engine)] == [3]


@pytest.mark.usefixtures("clean_tables")
def test_two_upserts_in_one_transaction_count_right(engine):
    with engine.begin() as conn:
        first = store(conn, [_record("c1", "2024-03-01")], CAMPAIGN_PERFORMANCE, None,
                      job_id=str(uuid.uuid4()))
        second = store(conn, [_record("c1", "2024-03-01", "5")], CAMPAIGN_PERFORMANCE, None,
                       job_id=str(uuid.uuid4()))
    assert first.result["inserted"] == 1
    assert (second.result["inserted"], second.result["updated"]) == (0, 1)


@pytest.mark.usefixtures("clean_tables")
def test_store_endpoint_honours_upsert_false_and_the_table_alias(run_job, retrieve):
    body = {"data_type": "campaign_performance",
            "data": {"records": [{"campaign_id": "s-1", "spend": 5.0, "date": "2024-05-01"}]},
            "storage_options": {"table_name": "campaigns", "upsert": True}}
    assert run_job("store", body)["result"]["inserted"] == 1
    body["data"]["records"] = [{"campaign_id": "s-1", "spend": 7.0, "date": "2024-05-01"},
                               {"campaign_id": "s-2", "spend": 8.0, "date": "2024-05-01"}]
    body["storage_options"]["upsert"] = False
    job = run_job("store", body)
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert (result["inserted"], result["updated"], result["skipped"]) == (1, 0, 1)
    assert result["table_name"] == "campaign_performance"
    found = retrieve({"data_type": "campaign_performance", "sort": ["campaign_id"]})
    assert [(r["campaign_id"], r["spend"]) for r in found["records"]] == [
        ("s-1", 5.0), ("s-2", 8.0)]


def test_storage_options_are_checked_before_anything_is_queued(client):
    for options, field in (({"table_name": "fx_rates"}, "storage_options.table_name"),
                           ({"upsert": "yes"}, "storage_options.upsert")):
        response = client.post("/api/v1/data_pipeline/store", json={
            "data_type": "campaign_performance", "data": {"records": [{"campaign_id": "1"}]},
            "storage_options": options})
        assert response.status_code == 422, response.get_json()
        assert response.get_json()["error"]["details"]["field"] == field


@pytest.mark.usefixtures("clean_tables")
def test_the_staging_table_starts_empty_in_every_transaction_of_a_connection(engine):
    """The staging table outlives transactions; what one staged never counts in another,
    committed, rolled back, or a second upsert within the same transaction."""
    with engine.connect() as conn:
        with conn.begin():
            first = store(conn, [_record("s1", "2024-05-01"), _record("s2", "2024-05-01")],
                          CAMPAIGN_PERFORMANCE, None, job_id=str(uuid.uuid4())).result
        assert (first["inserted"], first["duplicates_in_batch"]) == (2, 0)
        transaction = conn.begin()
        store(conn, [_record("s9", "2024-05-01")], CAMPAIGN_PERFORMANCE, None,
              job_id=str(uuid.uuid4()))
        transaction.rollback()
        with conn.begin():
            again = store(conn, [_record("s1", "2024-05-01")], CAMPAIGN_PERFORMANCE, None,
                          job_id=str(uuid.uuid4())).result
            then = store(conn, [_record("s3", "2024-05-01")], CAMPAIGN_PERFORMANCE, None,
                         job_id=str(uuid.uuid4())).result
    assert (again["inserted"], again["updated"], again["duplicates_in_batch"]) == (0, 1, 0)
    assert (then["inserted"], then["updated"], then["duplicates_in_batch"]) == (1, 0, 0)
    assert sorted(r["campaign_id"] for r in rows_of(engine)) == ["s1", "s2", "s3"]


def test_statements_are_composed_once_per_declaration(engine):
    from dataclasses import replace

    from tasks.storage.upsert import _statements

    with engine.connect() as conn, conn.connection.dbapi_connection.cursor() as cursor:
        first = _statements(CAMPAIGN_PERFORMANCE, cursor)
        assert _statements(CAMPAIGN_PERFORMANCE, cursor) is first
        # A declaration of the same name made anew (a reload) gets statements of its own.
        redeclared = replace(CAMPAIGN_PERFORMANCE, natural_key=("campaign_id",))
        again = _statements(redeclared, cursor)
        assert _statements(CAMPAIGN_PERFORMANCE, cursor) is not first  # replaced in the cache
    assert again is not first
    assert 'ON CONFLICT ("campaign_id")' in again.merge_updating
    assert 'ON CONFLICT ("campaign_id")' not in first.merge_updating
