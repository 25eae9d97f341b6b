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
from tasks.storage.upsert import StoredChunkMismatch, upsert, upsert_stored
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


def _text(records: list[dict[str, Any]]) -> str:
    """A chunk's text as the worker holds it (carried, or read with the claim)."""
    return payloads.encode(records).decode()


def _both_paths(engine: Engine, records: list[dict[str, Any]], data_type: DataType,
                unique_keys: bool = False,
                given: bool = False) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """The records processed, then stored by upsert_stored and, into the emptied table,
    by upsert: the two must count and write the same; returns the counts and rows.
    `given`: upsert_stored gets the chunk's text rather than reading it from the table."""
    job_id = stored_job(engine, records, ["store"], data_type=data_type.name)
    canonical = _canonical(records, data_type)
    with engine.begin() as conn:
        payloads.save(conn, job_id, "process", canonical)
        by_sql = upsert_stored(conn, data_type, job_id=job_id, payload="process", seq=0,
                               unique_keys=unique_keys,
                               body=_text(canonical) if given else None)
    stored = _rows(engine, data_type.table_name)
    _empty(engine, data_type.table_name)
    with engine.begin() as conn:
        by_copy = upsert(conn, data_type, payloads.load(conn, job_id, "process"),
                         job_id=job_id)
    close_job(engine, job_id)
    assert by_sql == by_copy
    assert stored == _rows(engine, data_type.table_name)
    return by_sql, stored


# How upsert_stored meets a chunk: read by PostgreSQL from the table (staged, or staged
# and trusted to hold one record per key), or given as text with one record per key
# (merged without the staging table).
PATHS = {"stored": (False, False), "stored-unique": (True, False), "given": (True, True)}


@pytest.mark.usefixtures("clean_tables")
@pytest.mark.parametrize("data_type", [CAMPAIGN_PERFORMANCE, AD_PERFORMANCE])
@pytest.mark.parametrize("path", PATHS)
def test_the_stored_chunk_is_written_as_the_copy_path_writes_its_records(engine, data_type,
                                                                         path):
    records = [{**r, "adset_id": "as-1", "ad_id": f"ad-{i}"} for i, r in enumerate(AWKWARD)]
    counts, stored = _both_paths(engine, records, data_type, *PATHS[path])
    assert counts == {"inserted": 3, "updated": 0, "skipped": 0, "duplicates_in_batch": 0}
    assert {r["campaign_id"] for r in stored} == {"c\t1", "广告 🚀", "no-account"}
    assert {str(r["spend"]) for r in stored} >= {"1234.5678", "0.000001"}
    assert {"age": "25-34", "nested": [1, "two", None]} in [  # a JSON column
        (r["extra"] or {}).get("placement") for r in stored]


@pytest.mark.usefixtures("clean_tables")
@pytest.mark.parametrize("path", PATHS)
def test_booleans_datetimes_and_json_strings_are_written_as_the_copy_path_writes_them(engine,
                                                                                      path):
    counts, stored = _both_paths(engine, CONTACTS, CRM_CONTACTS, *PATHS[path])
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
@pytest.mark.parametrize("given", [False, True])
def test_a_chunk_of_unique_keys_counts_updates_and_skips(engine, given):
    """The merge that trusts the chunk to hold one record per key (our process stage's
    output) counts as the one that finds the last of each key, whether PostgreSQL reads
    the chunk from the table or is given its text."""
    canonical = _canonical(AWKWARD, CAMPAIGN_PERFORMANCE)
    job_id = stored_job(engine, AWKWARD, ["store"])
    later, earlier = datetime(2026, 5, 2, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC)
    chunks = {"process": canonical, "older": canonical[:2], "newer": canonical[1:]}

    def merge(conn: Any, name: str, **options: Any) -> dict[str, int]:
        return upsert_stored(conn, CAMPAIGN_PERFORMANCE, job_id=job_id, payload=name, seq=0,
                             unique_keys=True, body=_text(chunks[name]) if given else None,
                             **options)

    with engine.begin() as conn:
        for name, records in chunks.items():
            payloads.save(conn, job_id, name, records)
        first = merge(conn, "process", accepted_at=earlier)
        newer = merge(conn, "newer", accepted_at=later)
        older = merge(conn, "older", accepted_at=earlier)
        kept = merge(conn, "process", update_existing=False)
    assert first == {"inserted": 3, "updated": 0, "skipped": 0, "duplicates_in_batch": 0}
    assert newer == {"inserted": 0, "updated": 2, "skipped": 0, "duplicates_in_batch": 0}
    # One key was written by the newer batch: left alone; the other is the same batch's.
    assert older == {"inserted": 0, "updated": 1, "skipped": 1, "duplicates_in_batch": 0}
    assert kept == {"inserted": 0, "updated": 0, "skipped": 3, "duplicates_in_batch": 0}
    close_job(engine, job_id)


@pytest.mark.usefixtures("clean_tables")
@pytest.mark.parametrize("given", [False, True])
def test_a_chunk_breaking_the_promise_of_unique_keys_fails_rather_than_storing(engine, given):
    """Should a repeated key ever reach the merge that trusts the chunk, the statement
    fails (and the stage with it, its batch kept) instead of writing either record."""
    canonical = _canonical(AWKWARD, CAMPAIGN_PERFORMANCE)
    job_id = stored_job(engine, AWKWARD, ["store"])
    repeated = [canonical[0], canonical[0]]
    with pytest.raises(DBAPIError, match="cannot affect row a second time"):
        with engine.begin() as conn:
            payloads.save(conn, job_id, "again", repeated)
            upsert_stored(conn, CAMPAIGN_PERFORMANCE, job_id=job_id, payload="again", seq=0,
                          unique_keys=True, body=_text(repeated) if given else None)
    assert _rows(engine, CAMPAIGN_PERFORMANCE.table_name) == []
    close_job(engine, job_id)


@pytest.mark.usefixtures("clean_tables")
def test_a_chunk_given_as_text_gets_the_partitions_its_dates_need(engine):
    """Merged without the staging table, a chunk still has its months' partitions made
    first; a row of a month without one would fail the statement."""
    canonical = _canonical(AWKWARD, CAMPAIGN_PERFORMANCE)
    job_id = stored_job(engine, AWKWARD, ["store"])
    with engine.begin() as conn:  # a month no other test writes, its partition gone
        conn.execute(text("DROP TABLE IF EXISTS campaign_performance_p203107"))
    with engine.begin() as conn:
        counts = upsert_stored(conn, CAMPAIGN_PERFORMANCE, job_id=job_id, payload="process",
                               seq=0, unique_keys=True, body=_text(canonical), expected=3)
    assert counts == {"inserted": 3, "updated": 0, "skipped": 0, "duplicates_in_batch": 0}
    with engine.connect() as conn:
        assert conn.execute(text(
            "SELECT count(*) FROM campaign_performance_p203107")).scalar() == 1
    close_job(engine, job_id)


@pytest.mark.usefixtures("clean_tables")
def test_a_chunk_given_as_text_with_another_count_than_its_chunk_fails(engine):
    canonical = _canonical(AWKWARD, CAMPAIGN_PERFORMANCE)
    job_id = stored_job(engine, AWKWARD, ["store"])
    with pytest.raises(StoredChunkMismatch, match="holds 3 records, not 4"):
        with engine.begin() as conn:
            upsert_stored(conn, CAMPAIGN_PERFORMANCE, job_id=job_id, payload="process",
                          seq=0, unique_keys=True, body=_text(canonical), expected=4)
    assert _rows(engine, CAMPAIGN_PERFORMANCE.table_name) == []
    close_job(engine, job_id)
