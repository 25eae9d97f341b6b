"""The store of our process stage's output, read by PostgreSQL from the claim check
(upsert_stored), writes exactly what the COPY path (upsert) writes from the same records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from tasks.datatypes import AD_PERFORMANCE, CAMPAIGN_PERFORMANCE, CRM_CONTACTS, DataType
from tasks.processing.core import process
from tasks.storage import payloads
from tasks.storage.upsert import upsert, upsert_stored
from tests.helpers import close_job, stored_job

AWKWARD = [
    {"source": "meta_ads", "account_id": "act_1", "campaign_id": "c\t1", "date": "2025-01-31",
     "campaign_name": 'quote\'s "double" \\ back\\slash\nnew line', "currency": "USD",
     "spend": "1234.5678", "impressions": 1000, "clicks": 37, "conversions": "3",
     "conversion_value": "99.99", "reach": 800},
    {"source": "meta_ads", "account_id": "act_1", "campaign_id": "广告 🚀", "date": "2031-07-04",
     "campaign_name": None, "spend": "0", "impressions": 0, "clicks": 0,
     "placement": {"age": "25-34", "nested": [1, "two", None]}},
    {"source": "meta_ads", "account_id": None, "campaign_id": "no-account", "date": None,
     "spend": "0.000001", "impressions": 9_000_000_000, "clicks": 1,
     "extra": {"utm": "a,b", "flag": True}},
]


# Booleans, datetimes with offsets, and a JSON column holding a string.
CONTACTS = [
    {"source": "hubspot", "contact_id": "1", "email": " A@Example.com ", "is_converted": "yes",
     "created_at": "2025-03-01T10:00:00+05:30", "source_updated_at": "2025-03-02T00:00:00Z",
     "extra": {"note": "a string", "n": 1.5}},
    {"source": "hubspot", "contact_id": "2", "is_converted": False,
     "created_at": "2025-03-01 23:59:59.123456-08:00", "lifecycle": "lead"},
]


def _canonical(records: list[dict[str, Any]], data_type: DataType) -> list[dict[str, Any]]:
    output = process([dict(r) for r in records], data_type, {"calculate_metrics": True})
    assert not output.rejected, output.rejected
    return output.records


def _rows(engine: Engine, table: str) -> list[dict[str, Any]]:
    lineage = {"id", "ingested_at", "updated_at", "accepted_at"}
    with engine.connect() as conn:
        rows = conn.execute(text(f'SELECT * FROM "{table}"')).mappings()  # a declared name
        return sorted(({k: v for k, v in r.items() if k not in lineage} for r in rows),
                      key=lambda r: repr(sorted(r.items(), key=repr)))


def _empty(engine: Engine, table: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(f'TRUNCATE "{table}"'))  # a declared name


def _both_paths(engine: Engine, records: list[dict[str, Any]], data_type: DataType,
                unique_keys: bool = False) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """The records processed, then stored by upsert_stored and, into the emptied table,
    by upsert: the two must count and write the same; returns the counts and rows."""
    job_id = stored_job(engine, records, ["store"], data_type=data_type.name)
    with engine.begin() as conn:
        payloads.save(conn, job_id, "process", _canonical(records, data_type))
        by_sql = upsert_stored(conn, data_type, job_id=job_id, payload="process", seq=0,
                               unique_keys=unique_keys)
    stored = _rows(engine, data_type.table_name)
    _empty(engine, data_type.table_name)
    with engine.begin() as conn:
        by_copy = upsert(conn, data_type, payloads.load(conn, job_id, "process"),
                         job_id=job_id)
    close_job(engine, job_id)
    assert by_sql == by_copy
    assert stored == _rows(engine, data_type.table_name)
    return by_sql, stored


@pytest.mark.usefixtures("clean_tables")
@pytest.mark.parametrize("data_type", [CAMPAIGN_PERFORMANCE, AD_PERFORMANCE])
@pytest.mark.parametrize("unique_keys", [False, True])
def test_the_stored_chunk_is_written_as_the_copy_path_writes_its_records(engine, data_type,
                                                                         unique_keys):
    records = [{**r, "adset_id": "as-1", "ad_id": f"ad-{i}"} for i, r in enumerate(AWKWARD)]
    counts, stored = _both_paths(engine, records, data_type, unique_keys)
    assert counts == {"inserted": 3, "updated": 0, "skipped": 0, "duplicates_in_batch": 0}
    assert {r["campaign_id"] for r in stored} == {"c\t1", "广告 🚀", "no-account"}
    assert {str(r["spend"]) for r in stored} >= {"1234.5678", "0.000001"}
    assert {"age": "25-34", "nested": [1, "two", None]} in [  # a JSON column
        (r["extra"] or {}).get("placement") for r in stored]


@pytest.mark.usefixtures("clean_tables")
def test_booleans_datetimes_and_json_strings_are_written_as_the_copy_path_writes_them(engine):
    counts, stored = _both_paths(engine, CONTACTS, CRM_CONTACTS)
    assert counts["inserted"] == 2
    first = next(r for r in stored if r["contact_id"] == "1")
    assert first["is_converted"] is True
    assert first["created_at"] == datetime(2025, 3, 1, 4, 30, tzinfo=UTC)
    assert first["extra"] == {"note": "a string", "n": 1.5}


@pytest.mark.usefixtures("clean_tables")
def test_a_stored_chunk_counts_updates_skips_and_duplicates(engine):
    canonical = _canonical(AWKWARD, CAMPAIGN_PERFORMANCE)
    job_id = stored_job(engine, AWKWARD, ["store"])
    later, earlier = datetime(2026, 5, 2, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC)
    with engine.begin() as conn:  # a month no other test writes, its partition gone
        conn.execute(text("DROP TABLE IF EXISTS campaign_performance_p203107"))
    with engine.begin() as conn:
        payloads.save(conn, job_id, "process", canonical)
        payloads.save(conn, job_id, "again", [*canonical[:2], canonical[0]])
        first = upsert_stored(conn, CAMPAIGN_PERFORMANCE, job_id=job_id, payload="process",
                              seq=0, accepted_at=later)
        # Staged twice in one transaction: the staging table is emptied in between.
        older = upsert_stored(conn, CAMPAIGN_PERFORMANCE, job_id=job_id, payload="again",
                              seq=0, accepted_at=earlier)
        none = upsert_stored(conn, CAMPAIGN_PERFORMANCE, job_id=job_id, payload="absent",
                             seq=0)
    assert first == {"inserted": 3, "updated": 0, "skipped": 0, "duplicates_in_batch": 0}
    # (Had the first chunk's rows stayed in the staging table: 3 skipped, none duplicate.)
    assert older == {"inserted": 0, "updated": 0, "skipped": 2, "duplicates_in_batch": 1}
    assert none == {"inserted": 0, "updated": 0, "skipped": 0, "duplicates_in_batch": 0}
    with engine.connect() as conn:  # the 2031 date's month was given its partition
        assert conn.execute(text(
            "SELECT count(*) FROM campaign_performance_p203107")).scalar() == 1
    close_job(engine, job_id)


@pytest.mark.usefixtures("clean_tables")
def test_a_chunk_of_unique_keys_counts_updates_and_skips(engine):
    """The merge that trusts the chunk to hold one record per key (our process stage's
    output) counts as the one that finds the last of each key."""
    canonical = _canonical(AWKWARD, CAMPAIGN_PERFORMANCE)
    job_id = stored_job(engine, AWKWARD, ["store"])
    later, earlier = datetime(2026, 5, 2, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC)
    with engine.begin() as conn:
        payloads.save(conn, job_id, "process", canonical)
        payloads.save(conn, job_id, "older", canonical[:2])
        payloads.save(conn, job_id, "newer", canonical[1:])
        first = upsert_stored(conn, CAMPAIGN_PERFORMANCE, job_id=job_id, payload="process",
                              seq=0, accepted_at=earlier, unique_keys=True)
        newer = upsert_stored(conn, CAMPAIGN_PERFORMANCE, job_id=job_id, payload="newer",
                              seq=0, accepted_at=later, unique_keys=True)
        older = upsert_stored(conn, CAMPAIGN_PERFORMANCE, job_id=job_id, payload="older",
                              seq=0, accepted_at=earlier, unique_keys=True)
        kept = upsert_stored(conn, CAMPAIGN_PERFORMANCE, job_id=job_id, payload="process",
                             seq=0, update_existing=False, unique_keys=True)
    assert first == {"inserted": 3, "updated": 0, "skipped": 0, "duplicates_in_batch": 0}
    assert newer == {"inserted": 0, "updated": 2, "skipped": 0, "duplicates_in_batch": 0}
    # One key was written by the newer batch: left alone; the other is the same batch's.
    assert older == {"inserted": 0, "updated": 1, "skipped": 1, "duplicates_in_batch": 0}
    assert kept == {"inserted": 0, "updated": 0, "skipped": 3, "duplicates_in_batch": 0}
    close_job(engine, job_id)


@pytest.mark.usefixtures("clean_tables")
def test_a_chunk_breaking_the_promise_of_unique_keys_fails_rather_than_storing(engine):
    """Should a repeated key ever reach the merge that trusts the chunk, the statement
    fails (and the stage with it, its batch kept) instead of writing either record."""
    canonical = _canonical(AWKWARD, CAMPAIGN_PERFORMANCE)
    job_id = stored_job(engine, AWKWARD, ["store"])
    with pytest.raises(DBAPIError, match="cannot affect row a second time"):
        with engine.begin() as conn:
            payloads.save(conn, job_id, "again", [canonical[0], canonical[0]])
            upsert_stored(conn, CAMPAIGN_PERFORMANCE, job_id=job_id, payload="again", seq=0,
                          unique_keys=True)
    assert _rows(engine, CAMPAIGN_PERFORMANCE.table_name) == []
    close_job(engine, job_id)
