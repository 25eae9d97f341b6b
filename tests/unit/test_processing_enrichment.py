"""Audience enrichment in the process core, with a fake lookups object (no database)."""

from __future__ import annotations

from tasks.datatypes import AD_PERFORMANCE, CAMPAIGN_PERFORMANCE, WEB_ANALYTICS
from tasks.processing.core import process

SUMMARY_1 = {"as_of": "2025-01-15", "segments_count": 2, "audience_size": 3000,
             "reach": 1500, "impressions": None, "clicks": None,
             "segments": [{"age": "25-34", "audience_size": 2000},
                          {"age": "35-44", "audience_size": 1000}],
             "segments_truncated": False}
SUMMARY_2 = {**SUMMARY_1, "audience_size": 10}


class FakeAudience:
    """Lookups with fixed audience summaries; records every call."""

    def __init__(self, summaries: dict) -> None:
        self.summaries = summaries
        self.calls: list[set] = []

    def audience_for(self, campaign_keys):
        self.calls.append(set(campaign_keys))
        ids = {campaign_id for _, campaign_id in campaign_keys}
        return {key: s for key, s in self.summaries.items() if key[1] in ids}

    def fx_rates(self, pairs, since, until):
        return {}


def audience(record: dict):
    """The summary, in its column or in `extra` while the table has no such column."""
    return record["audience"] if "audience" in record else record.get("extra", {}).get("audience")


ENRICH = {"enrich_with_audience_data": True}


def test_records_get_their_campaigns_summary_one_lookup_per_batch():
    lookups = FakeAudience({("meta_ads", "1"): SUMMARY_1, ("meta_ads", "2"): SUMMARY_2})
    rows = [{"source": "meta_ads", "campaign_id": str(i % 3), "date": f"2025-01-{i + 1:02d}"}
            for i in range(9)]
    output = process(rows, CAMPAIGN_PERFORMANCE, ENRICH, lookups)
    assert lookups.calls == [{("meta_ads", "0"), ("meta_ads", "1"), ("meta_ads", "2")}]
    assert [audience(r) for r in output.records] == [None, SUMMARY_1, SUMMARY_2] * 3
    assert output.result["enriched"] == 6
    assert output.result["enrichment_unmatched"] == 3
    assert output.result["records_count"] == 9  # unmatched records are kept


def test_the_source_must_match():
    lookups = FakeAudience({("google_ads", "1"): SUMMARY_1})
    output = process([{"source": "meta_ads", "campaign_id": "1"}], CAMPAIGN_PERFORMANCE,
                     ENRICH, lookups)
    assert audience(output.records[0]) is None
    assert output.result["enrichment_unmatched"] == 1


def test_a_record_without_source_matches_a_campaign_stored_under_one_source():
    lookups = FakeAudience({("meta_ads", "1"): SUMMARY_1, ("meta_ads", "2"): SUMMARY_1,
                            ("google_ads", "2"): SUMMARY_2})
    rows = [{"campaign_id": "1"}, {"campaign_id": "2"}]  # "2" is ambiguous
    output = process(rows, CAMPAIGN_PERFORMANCE, ENRICH, lookups)
    assert [audience(r) for r in output.records] == [SUMMARY_1, None]
    assert output.result["enriched"] == 1


def test_the_summary_goes_in_extra_next_to_the_records_own_fields():
    lookups = FakeAudience({("meta_ads", "1"): SUMMARY_1})
    record = {"source": "meta_ads", "campaign_id": "1", "objective": "SALES"}
    out = process([record], AD_PERFORMANCE, ENRICH, lookups).records[0]
    assert audience(out) == SUMMARY_1
    assert out["extra"]["objective"] == "SALES"


def test_enrichment_off_by_default_and_no_lookup_made():
    lookups = FakeAudience({("meta_ads", "1"): SUMMARY_1})
    output = process([{"source": "meta_ads", "campaign_id": "1"}], CAMPAIGN_PERFORMANCE,
                     None, lookups)
    assert audience(output.records[0]) is None and lookups.calls == []
    assert output.result["enriched"] == 0 and "enrichment_unmatched" not in output.result


def test_records_without_campaign_are_counted_unmatched():
    lookups = FakeAudience({})
    output = process([{"campaign_id": None, "ad_id": "1"}], AD_PERFORMANCE, ENRICH, lookups)
    assert output.result["enrichment_unmatched"] == 1 and lookups.calls == []


def test_data_types_that_are_not_campaigns_skip_enrichment():
    lookups = FakeAudience({})
    output = process([{"date": "2025-01-15", "sessions": 1}], WEB_ANALYTICS, ENRICH, lookups)
    assert "enrichment_skipped" in output.result and lookups.calls == []
    assert output.result["records_count"] == 1
