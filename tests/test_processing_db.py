"""The process stage's database lookups on a real PostgreSQL: one query per batch each."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tasks.coerce import coerce_record
from tasks.datatypes import AUDIENCE, CAMPAIGN_PERFORMANCE, FX_RATES
from tasks.processing.core import process
from tasks.processing.lookups import DbLookups
from tasks.processing.tasks import process_step
from tasks.runner import run_stage
from tasks.storage import jobs
from tasks.storage.upsert import upsert
from tests.helpers import close_job, stage_output, stored_job

pytestmark = pytest.mark.usefixtures("clean_tables")

D = Decimal


def segment(source: str, campaign: str, day: str | None, size: int | None, **dims) -> dict:
    counts = {} if size is None else {"audience_size": size, "reach": size // 2,
                                      "impressions": size * 3, "clicks": size // 100}
    return {"source": source, "campaign_id": campaign, "date": day, **counts, **dims}


AUDIENCE_ROWS = [
    # Campaign c1: an older snapshot, then 7 segments on its latest date.
    segment("meta_ads", "c1", "2025-01-01", 99_999, age="18-24"),
    *(segment("meta_ads", "c1", "2025-01-15", 1000 * (i + 1), age=f"{20 + i}", gender="female")
      for i in range(7)),
    # Campaign c2 under two sources; c3 has only undated rows.
    segment("meta_ads", "c2", "2025-01-10", 500, country="US"),
    segment("google_ads", "c2", "2025-01-12", 700, country="FR"),
    segment("meta_ads", "c3", None, 42, device="mobile"),
    segment("meta_ads", "c3", None, None, device="desktop"),
]

FX_ROWS = [
    {"source": "ecb", "date": "2025-01-02", "from_currency": "USD", "to_currency": "EUR",
     "rate": "0.90"},
    {"source": "ecb", "date": "2025-01-10", "from_currency": "usd", "to_currency": "eur",
     "rate": "0.92"},
    {"source": "ecb", "date": "2025-01-20", "from_currency": "USD", "to_currency": "EUR",
     "rate": "0.95"},
    {"source": "ecb", "date": "2025-01-25", "from_currency": "USD", "to_currency": "EUR",
     "rate": "0"},  # nonsense: never used
    {"source": "ecb", "date": "2025-01-05", "from_currency": "EUR", "to_currency": "GBP",
     "rate": "0.8"},
    {"source": "ecb", "date": "2025-01-05", "from_currency": "USD", "to_currency": "JPY",
     "rate": "150"},
]


def store(engine: Engine, data_type, rows) -> None:
    with engine.begin() as conn:
        upsert(conn, data_type, [dict(row) for row in rows], job_id=str(uuid.uuid4()))


@contextmanager
def counted(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements run on `engine` inside the block."""
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.fixture
def stored(engine: Engine) -> Engine:
    """Audience and fx_rates rows stored through the storage upsert."""
    store(engine, AUDIENCE, [coerce_record(r, AUDIENCE)[0] for r in AUDIENCE_ROWS])
    store(engine, FX_RATES, [coerce_record(r, FX_RATES)[0] for r in FX_ROWS])
    return engine


def test_audience_summaries_in_one_query(stored: Engine):
    with stored.connect() as conn, counted(stored) as statements:
        found = DbLookups(conn).audience_for(
            {("meta_ads", "c1"), ("meta_ads", "c2"), (None, "c3"), ("meta_ads", "nope")})
    assert len(statements) == 1
    assert set(found) == {("meta_ads", "c1"), ("meta_ads", "c2"), ("google_ads", "c2"),
                          ("meta_ads", "c3")}
    c1 = found["meta_ads", "c1"]
    assert c1["as_of"] == "2025-01-15"  # the latest snapshot only
    assert c1["segments_count"] == 7
    assert c1["audience_size"] == 28_000 and c1["reach"] == 14_000
    assert c1["impressions"] == 84_000 and c1["clicks"] == 280
    assert c1["segments_truncated"] is True
    assert [s["audience_size"] for s in c1["segments"]] == [7000, 6000, 5000, 4000, 3000]
    assert c1["segments"][0] == {"age": "26", "gender": "female", "audience_size": 7000,
                                 "reach": 3500, "impressions": 21000, "clicks": 70}
    c3 = found["meta_ads", "c3"]
    assert c3["as_of"] is None and c3["segments_count"] == 2 and c3["audience_size"] == 42
    assert c3["segments"][1] == {"device": "desktop"}
    assert found["google_ads", "c2"]["segments"] == [
        {"country": "FR", "audience_size": 700, "reach": 350, "impressions": 2100, "clicks": 7}]


def test_audience_of_no_campaigns_asks_nothing(stored: Engine):
    with stored.connect() as conn, counted(stored) as statements:
        assert DbLookups(conn).audience_for(set()) == {}
    assert statements == []


def test_fx_rates_in_one_query_from_the_latest_before_since(stored: Engine):
    pairs = {("USD", "EUR"), ("EUR", "USD"), ("GBP", "EUR"), ("EUR", "GBP")}
    with stored.connect() as conn, counted(stored) as statements:
        rates = DbLookups(conn).fx_rates(pairs, date(2025, 1, 12), date(2025, 1, 22))
    assert len(statements) == 1
    assert rates == {
        ("USD", "EUR"): [(date(2025, 1, 10), D("0.92")), (date(2025, 1, 20), D("0.95"))],
        ("EUR", "GBP"): [(date(2025, 1, 5), D("0.8"))],
    }


def test_fx_rates_without_bounds_and_without_an_earlier_rate(stored: Engine):
    with stored.connect() as conn:
        lookups = DbLookups(conn)
        latest = lookups.fx_rates({("USD", "EUR")}, date.max, None)
        everything = lookups.fx_rates({("USD", "EUR")}, None, None)
        later = lookups.fx_rates({("USD", "EUR")}, date(2024, 1, 1), date(2025, 1, 9))
    assert latest == {("USD", "EUR"): [(date(2025, 1, 20), D("0.95"))]}  # rate 0 skipped
    assert [day.day for day, _ in everything["USD", "EUR"]] == [2, 10, 20]
    assert later == {("USD", "EUR"): [(date(2025, 1, 2), D("0.90"))]}


def test_several_sources_on_one_date_the_latest_written_wins(stored: Engine):
    store(stored, FX_RATES, [{"source": "manual", "date": date(2025, 1, 10),
                              "from_currency": "USD", "to_currency": "EUR", "rate": D("0.5")}])
    with stored.connect() as conn:
        rates = DbLookups(conn).fx_rates({("USD", "EUR")}, date(2025, 1, 10), date(2025, 1, 10))
    assert rates == {("USD", "EUR"): [(date(2025, 1, 10), D("0.5"))]}


RECORDS = [
    {"source": "meta_ads", "account_id": "a", "campaign_id": "c1", "date": "2025-01-15",
     "currency": "USD", "spend": "100.5", "impressions": 1000, "clicks": 50,
     "conversions": "5", "conversion_value": "201"},
    {"source": "meta_ads", "account_id": "a", "campaign_id": "c9", "date": "2025-01-21",
     "currency": "CHF", "spend": "10", "impressions": 10, "clicks": 1},
    # No source, no date: the latest rate (EUR->GBP 0.8, inverted) and the one c3 stored.
    {"campaign_id": "c3", "currency": "GBP", "spend": "1500", "impressions": 0, "clicks": 0},
]


def _extra_or_column(record: dict, name: str):
    return record[name] if name in record else record.get("extra", {}).get(name)


def test_process_with_database_lookups_two_queries_per_batch(stored: Engine):
    options = {"calculate_metrics": True, "enrich_with_audience_data": True,
               "target_currency": "EUR"}
    with stored.connect() as conn, counted(stored) as statements:
        output = process(RECORDS * 200, CAMPAIGN_PERFORMANCE, options, DbLookups(conn))
    assert len(statements) == 2  # one for the rates, one for the audience
    first, third = output.records
    assert first["spend"] == D("92.460") and first["currency"] == "EUR"
    assert first["cpc"] == D("1.8492")
    assert _extra_or_column(first, "original_spend") == D("100.5")
    assert _extra_or_column(first, "audience")["segments_count"] == 7
    assert third["spend"] == D("1875.00") and third["currency"] == "EUR"
    assert third["cpm"] is None
    assert _extra_or_column(third, "audience")["as_of"] is None  # c3 under one source
    assert [r.reasons[0]["rule"] for r in output.rejected] == ["fx_rate_missing"]
    result = output.result
    assert result["duplicates_removed"] == 597
    assert (result["converted"], result["fx_rate_missing"], result["enriched"]) == (2, 1, 2)
    assert result["enrichment_unmatched"] == 0


def _process(engine: Engine, options: dict | None, data: Any) -> dict:
    """The process stage's Celery step, run on a stored job: its stage row and output."""
    job_id = stored_job(engine, data, ["process", "store"],
                        {"processing_options": options} if options is not None else {})
    summary = run_stage(job_id, "process", process_step)
    with engine.connect() as conn:
        job = jobs.get(conn, job_id)
    records = stage_output(engine, job_id, "process")
    close_job(engine, job_id)
    return {"summary": summary, "job": job, "records": records}


def test_the_celery_step_uses_the_stage_connection(stored: Engine):
    ran = _process(stored, {"enrich_with_audience_data": True}, RECORDS[:1])
    assert _extra_or_column(ran["records"][0], "audience")["as_of"] == "2025-01-15"
    assert ran["job"]["stages"][0]["result"]["enriched"] == 1


def test_the_celery_step_fails_the_job_on_bad_options(engine: Engine):
    ran = _process(engine, {"target_currency": "EURO"}, RECORDS)
    assert ran["summary"]["failed"] == "invalid_processing_options"
    assert ran["job"]["error"]["details"]["field"] == "processing_options.target_currency"
    assert _process(engine, None, {"records": RECORDS})["summary"]["failed"] == "invalid_payload"


def _chain_body(spends: list, **options) -> dict:
    records = [{"account_id": "a", "campaign_id": "c1", "date": f"2025-01-{15 + i}",
                "currency": "USD", "spend": spend, "impressions": 1000, "clicks": 50}
               for i, spend in enumerate(spends)]
    return {"source": "meta_ads", "data_type": "campaign_performance",
            "data": {"records": records}, "processing_options": options}


def _sql_field(name: str) -> str:
    """A value's SQL: its column once declared, meanwhile its key in `extra` (JSON)."""
    if name in CAMPAIGN_PERFORMANCE.all_columns:
        return f"to_jsonb({name})"
    return f"extra->'{name}'"


def _stored_spend(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.exec_driver_sql(
            f"SELECT sum(spend), sum(({_sql_field('original_spend')} #>> '{{}}')::numeric),"
            f" min(currency), min({_sql_field('audience')}->>'as_of')"
            " FROM campaign_performance WHERE account_id = 'a'")]


def test_the_chain_keeps_money_exact_end_to_end(stored: Engine, run_job):
    job = run_job("ingest", _chain_body([0.1, 0.2]))
    assert job["status"] == "succeeded", job
    assert _stored_spend(stored) == [(D("0.3"), None, "USD", None)]  # 0.1 + 0.2 is 0.3


def test_the_chain_converts_and_enriches_with_stored_data(stored: Engine, run_job):
    job = run_job("ingest", _chain_body(
        [0.1, "0.2"], target_currency="EUR", enrich_with_audience_data=True))
    assert job["status"] == "succeeded", job
    process_result = next(s["result"] for s in job["stages"] if s["name"] == "process")
    assert process_result["converted"] == 2 and process_result["enriched"] == 2
    assert process_result["target_currency"] == "EUR"
    # 0.1 * 0.92 + 0.2 * 0.92, exactly; the originals kept beside them.
    assert _stored_spend(stored) == [(D("0.276"), D("0.3"), "EUR", "2025-01-15")]
