"""Stage cores are plain functions: callable with no broker and no database."""

from __future__ import annotations

from decimal import Decimal

from tasks.datatypes import CAMPAIGN_PERFORMANCE
from tasks.ingestion.core import ingest
from tasks.processing.core import process
from tasks.validation.core import validate

SEED = {"campaign_id": "123", "spend": 100.0, "impressions": 1000, "clicks": 50, "conversions": 5}


def test_the_three_cpu_stages_chain_as_plain_functions():
    ingested = ingest({"records": [SEED]}, "meta_ads", "campaign_performance")
    assert ingested.records == [{
        "campaign_id": "123", "spend": Decimal("100.0"), "impressions": 1000, "clicks": 50,
        "conversions": Decimal(5), "source": "meta_ads",
    }]
    validated = validate(ingested.records, CAMPAIGN_PERFORMANCE, None)
    assert validated.result["validation_passed"] is True
    processed = process(validated.records, CAMPAIGN_PERFORMANCE, {"calculate_metrics": True})
    record = processed.records[0]
    assert record["ctr"] == Decimal("0.05")
    assert record["cpc"] == 2
    assert record["cpm"] == 100
    assert record["cpa"] == 20
    assert record["conversion_rate"] == Decimal("0.1")
    assert record["roas"] is None


def test_process_dedups_on_the_natural_key_last_wins():
    rows = [{**SEED, "spend": 1}, {**SEED, "spend": 2}, {**SEED, "campaign_id": "9"}]
    out = process(rows, CAMPAIGN_PERFORMANCE, None)
    assert [(r["campaign_id"], r["spend"]) for r in out.records] == [("123", 2), ("9", 100)]
    assert out.result["duplicates_removed"] == 1
