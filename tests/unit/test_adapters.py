"""Adapter registry, payload shapes, unsupported data types and canonical pass-through."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tasks.datatypes import DATA_TYPES
from tasks.ingestion.adapters import (
    ADAPTERS,
    PayloadShapeError,
    UnknownSource,
    UnsupportedDataType,
    get_adapter,
)
from tasks.ingestion.core import count_rows, ingest

SEED_RECORD = {"campaign_id": "123", "spend": 100.0, "impressions": 1000, "clicks": 50,
               "conversions": 5}

EXPECTED_DATA_TYPES = {
    "generic": set(DATA_TYPES),
    "meta_ads": {"campaign_performance", "ad_performance", "audience"},
    "google_ads": {"campaign_performance", "ad_performance", "audience"},
    "tiktok_ads": {"campaign_performance", "ad_performance", "audience"},
    "linkedin_ads": {"campaign_performance", "ad_performance"},
    "hubspot": {"crm_contacts", "crm_deals"},
    "salesforce": {"crm_contacts", "crm_deals"},
    "ga4": {"web_analytics"},
}

# One canonical record per data type, as a client that already mapped its data sends it.
CANONICAL = {
    "campaign_performance": SEED_RECORD,
    "ad_performance": {**SEED_RECORD, "adset_id": "9", "ad_id": "10", "date": "2025-01-15",
                       "currency": "EUR", "ctr": 0.05},
    "audience": {"campaign_id": "1", "date": "2025-01-15", "age": "25-34", "gender": "female",
                 "country": "DE", "platform": "instagram", "device": "mobile", "spend": "1.5"},
    "crm_contacts": {"contact_id": "c1", "email": "a@example.com", "is_converted": "false",
                     "created_at": "2025-01-15T10:00:00Z", "lead_source": "Web"},
    "crm_deals": {"deal_id": "d1", "amount": "10.5", "is_won": True, "close_date": "2025-01-31",
                  "stage": "won", "campaign_id": "7"},
    "web_analytics": {"property_id": "p1", "date": "20250115", "session_source": "google",
                      "sessions": "15.0", "revenue": "1.25", "conversions": 2},
}


def test_every_source_is_registered_with_its_data_types() -> None:
    assert {name: set(a.data_types) for name, a in ADAPTERS.items()} == EXPECTED_DATA_TYPES
    assert all(name == adapter.name for name, adapter in ADAPTERS.items())


def test_the_seed_example_sent_as_meta_ads_keeps_working() -> None:
    output = ingest({"records": [SEED_RECORD]}, "meta_ads", "campaign_performance")
    assert output.rejected == []
    assert output.records == [{
        "campaign_id": "123", "spend": Decimal("100.0"), "impressions": 1000, "clicks": 50,
        "conversions": Decimal("5"), "source": "meta_ads",
    }]


@pytest.mark.parametrize("source,data_type", sorted(
    (source, data_type) for source, types in EXPECTED_DATA_TYPES.items() for data_type in types
    if data_type in CANONICAL and source != "generic"
))
def test_canonical_records_map_as_with_the_generic_source(source: str, data_type: str) -> None:
    record = CANONICAL[data_type]
    expected = ingest({"records": [record]}, "generic", data_type).records[0]
    expected["source"] = source
    if "ctr" in record and source in ("meta_ads", "tiktok_ads"):
        # A platform's ratio names are read as the platform's ratios, never as canonical ones.
        del expected["ctr"]
        expected["extra"] = {"platform_ctr": record["ctr"]}
    output = ingest({"records": [record]}, source, data_type)
    assert output.rejected == []
    assert output.records == [expected]


@pytest.mark.parametrize("source,data_type,allowed", [
    ("hubspot", "campaign_performance", ["crm_contacts", "crm_deals"]),
    ("salesforce", "web_analytics", ["crm_contacts", "crm_deals"]),
    ("ga4", "crm_deals", ["web_analytics"]),
    ("linkedin_ads", "audience", ["ad_performance", "campaign_performance"]),
    ("meta_ads", "crm_contacts", ["ad_performance", "audience", "campaign_performance"]),
])
def test_unsupported_data_type_lists_what_the_source_can_produce(
    source: str, data_type: str, allowed: list[str]
) -> None:
    with pytest.raises(UnsupportedDataType) as info:
        get_adapter(source, data_type)
    assert info.value.supported == allowed
    assert str(info.value) == (f"source {source!r} cannot produce {data_type!r}; it can "
                               f"produce: {', '.join(allowed)}")
    with pytest.raises(UnsupportedDataType):
        count_rows({"records": []}, source, data_type)


def test_unknown_source() -> None:
    with pytest.raises(UnknownSource, match="unknown source 'myspace'"):
        get_adapter("myspace", "campaign_performance")


@pytest.mark.parametrize("source,data_type,data,count", [
    ("meta_ads", "campaign_performance", {"data": [{}, {}], "paging": {}}, 2),
    ("meta_ads", "campaign_performance", {"data": []}, 0),
    ("google_ads", "campaign_performance", [{"results": [{}, {}]}, {"results": [{}]},
                                            {"fieldMask": "x", "requestId": "r"}], 3),
    ("google_ads", "campaign_performance", [], 0),
    ("google_ads", "campaign_performance", {"results": [{}], "nextPageToken": "t"}, 1),
    ("google_ads", "campaign_performance", {"fieldMask": "x", "requestId": "r"}, 0),
    ("tiktok_ads", "campaign_performance",
     {"code": 0, "message": "OK", "data": {"page_info": {}, "list": [{}]}}, 1),
    ("linkedin_ads", "campaign_performance", {"elements": [{}, {}], "paging": {}}, 2),
    ("hubspot", "crm_deals", {"results": [{}], "paging": {}}, 1),
    ("salesforce", "crm_deals", {"totalSize": 2, "done": True, "records": [{}, {}]}, 2),
    ("salesforce", "crm_deals", {"totalSize": 0, "done": True, "records": []}, 0),
    ("ga4", "web_analytics", {"dimensionHeaders": [{"name": "date"}], "metricHeaders": [],
                              "rows": [{"dimensionValues": [{"value": "20250101"}]}]}, 1),
    # GA4 leaves `rows` out of a report with no rows.
    ("ga4", "web_analytics", {"dimensionHeaders": [{"name": "date"}], "metricHeaders": [],
                              "rowCount": 0}, 0),
    ("ga4", "web_analytics", {"reports": [
        {"dimensionHeaders": [{"name": "date"}], "rows": [{}, {}]},
        {"dimensionHeaders": [{"name": "date"}], "rows": [{}]},
    ]}, 3),
    ("generic", "fx_rates", {"records": [{}, {}]}, 2),
])
def test_native_response_shapes_are_counted_without_mapping(
    source: str, data_type: str, data: Any, count: int
) -> None:
    assert count_rows(data, source, data_type) == count


@pytest.mark.parametrize("source,data_type,data,message", [
    ("meta_ads", "campaign_performance", {"data": "rows"}, '{"data": [...], "paging"'),
    ("meta_ads", "campaign_performance", [{"campaign_id": "1"}], '{"records": [...]}'),
    ("meta_ads", "campaign_performance", {"records": {"a": 1}}, "data.records must be a list"),
    ("google_ads", "campaign_performance", [{"results": 3}], "searchStream response"),
    ("google_ads", "campaign_performance", ["row"], "searchStream response"),
    ("google_ads", "campaign_performance", {}, 'search response {"results": [...]}'),
    ("tiktok_ads", "campaign_performance", {"code": 0, "data": {"list": "x"}},
     '{"code": 0, "data": {"list": [...]}}'),
    ("tiktok_ads", "campaign_performance",
     {"code": 40105, "message": "Access token is incorrect", "data": {}},
     "code 40105: Access token is incorrect"),
    ("linkedin_ads", "campaign_performance", {"elements": {}}, '{"elements": [...]}'),
    ("hubspot", "crm_contacts", {"results": None}, '{"results": [...]}'),
    ("salesforce", "crm_deals", {"totalSize": 1, "done": True}, '"records": [...]'),
    ("ga4", "web_analytics", {"dimensionHeaders": "date"}, "dimensionHeaders must be a list"),
    ("ga4", "web_analytics", {"dimensionHeaders": [], "rows": {}}, "rows must be a list"),
    ("ga4", "web_analytics", {"rows": []}, "runReport response"),
    ("generic", "campaign_performance", {"data": []}, 'data must be {"records": [...]}'),
])
def test_unrecognised_shapes_say_what_is_accepted(
    source: str, data_type: str, data: Any, message: str
) -> None:
    with pytest.raises(PayloadShapeError) as info:
        count_rows(data, source, data_type)
    assert message in str(info.value)
    if source != "generic" and "must be a list" not in message and "code" not in message:
        assert '{"records": [...]}' in str(info.value)


# Rows of the wrong shape, for every adapter: each becomes a record or a refusal with a
# reason; no other exception escapes the ingest stage.
ODD_ROWS: list[Any] = [
    {}, [], "text", 5, None,
    {"campaign": "123"}, {"campaign": None}, {"metrics": {"costMicros": "abc"}},
    {"metrics": {"costMicros": True}}, {"metrics": {"costMicros": [1]}},
    {"metrics": None}, {"dimensions": None, "metrics": "-"}, {"dimensions": {"ctr": "-"}},
    {"adGroupCriterion": {"ageRange": {"type": "X"}}, "adGroupAd": {"ad": "x"}},
    {"dateRange": 5}, {"dateRange": {"start": {"year": "x"}}}, {"pivotValues": "x"},
    {"pivotValues": [5]}, {"pivotValue": "urn:li:sponsoredCampaign:"},
    {"actions": "{oops"}, {"actions": [1, 2]}, {"actions": [{"action_type": "purchase"}]},
    {"actions": {"purchase": "x"}}, {"action_values": 5}, {"conversions": [{"a": 1}]},
    {"properties": None}, {"properties": {"amount": {"nested": 1}}, "id": ["x"]},
    {"attributes": {"type": "Account"}}, {"attributes": None, "Probability": "x"},
    {"dimensionValues": [], "metricValues": None}, {"keyEvents": "1", "conversions": "2"},
    {"spend": "-", "impressions": {"a": 1}, "date": "yesterday"},
]


@pytest.mark.parametrize("source,data_type", sorted(
    (source, data_type) for source, types in EXPECTED_DATA_TYPES.items() for data_type in types
))
def test_odd_rows_are_refused_with_a_reason_never_crash(source: str, data_type: str) -> None:
    output = ingest({"records": ODD_ROWS}, source, data_type)
    assert output.records_in == len(ODD_ROWS)
    assert len(output.records) + len(output.rejected) == len(ODD_ROWS)
    for rejected in output.rejected:
        assert rejected.reasons[0]["message"]


def test_odd_option_values_are_refused_per_record() -> None:
    row = {"campaign_id": "1", "actions": [{"action_type": "purchase", "value": "1"}]}
    output = ingest({"records": [row]}, "meta_ads", "campaign_performance",
                    {"conversion_action_types": 5})
    assert output.records == []
    assert "conversion_action_types must be a list" in output.rejected[0].reasons[0]["message"]
