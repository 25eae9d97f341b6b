"""Ad platform adapters: native fixtures -> exact canonical records after the ingest core."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tasks.ingestion.adapters.google_ads import micros_to_money
from tasks.ingestion.adapters.linkedin_ads import linkedin_date, parse_urn
from tasks.ingestion.adapters.meta_ads import DEFAULT_CONVERSION_ACTION_TYPES
from tasks.ingestion.core import ingest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def records(data: Any, source: str, data_type: str, options: Any = None) -> list[dict]:
    output = ingest(data, source, data_type, options)
    assert output.rejected == []
    return output.records


def refusals(data: Any, source: str, data_type: str, options: Any = None) -> list[str]:
    output = ingest(data, source, data_type, options)
    assert output.records == []
    return [r.reasons[0]["message"] for r in output.rejected]


# --- Meta -------------------------------------------------------------------------------

META = load("meta_ads_insights.json")


def test_meta_insights_response() -> None:
    first, second, third = records(META, "meta_ads", "campaign_performance")
    raw = META["data"][0]
    assert first == {
        "source": "meta_ads",
        "account_id": "1234567890",
        "currency": "EUR",
        "campaign_id": "23851234567890123",
        "campaign_name": "Spring Sale",
        "date": date(2025, 3, 14),
        "impressions": 361324,
        "clicks": 4210,
        "reach": 201455,
        "spend": Decimal("5339.5"),
        # omni_purchase only: the same purchases are also listed as purchase and
        # offsite_conversion.fb_pixel_purchase, which must not be added.
        "conversions": Decimal("43"),
        "conversion_value": Decimal("3870.10"),
        "extra": {
            "account_name": "Acme Shop",
            "date_stop": "2025-03-14",
            "inline_link_clicks": "3980",
            "platform_frequency": "1.793571",
            "platform_cpc": "1.26829",
            "platform_cpm": "14.777762",
            "platform_ctr": "1.165159",
            "actions": raw["actions"],
            "action_values": raw["action_values"],
        },
    }
    # An older row without omni_purchase falls back to the pixel's purchases.
    assert (second["conversions"], second["conversion_value"]) == (Decimal(2), Decimal("99.90"))
    assert second["spend"] == Decimal(0) and second["clicks"] == 0
    # No actions at all: conversions unknown, not zero.
    assert "conversions" not in third and "conversion_value" not in third
    assert third["extra"] == {"date_stop": "2025-03-14"}


def test_meta_default_action_types_are_a_precedence_not_a_sum() -> None:
    assert DEFAULT_CONVERSION_ACTION_TYPES[0] == "omni_purchase"
    row = {"campaign_id": "1", "actions": [
        {"action_type": "purchase", "value": "5"},
        {"action_type": "offsite_conversion.fb_pixel_purchase", "value": "5"},
    ]}
    [record] = records({"records": [row]}, "meta_ads", "campaign_performance")
    assert record["conversions"] == Decimal(5)
    row["actions"] = [{"action_type": "link_click", "value": "9"}]
    [record] = records({"records": [row]}, "meta_ads", "campaign_performance")
    assert record["conversions"] == Decimal(0)


def test_meta_configured_action_types_are_summed() -> None:
    options = {"conversion_action_types": ["offsite_conversion.fb_pixel_purchase", "link_click",
                                           "lead"]}
    first = records(META, "meta_ads", "campaign_performance", options)[0]
    assert first["conversions"] == Decimal(41 + 3980)
    assert first["conversion_value"] == Decimal("3690.55")
    one = records(META, "meta_ads", "campaign_performance",
                  {"conversion_action_types": "purchase"})[0]
    assert one["conversions"] == Decimal(41)


def test_meta_audience_breakdowns() -> None:
    age_gender, placement = records(load("meta_ads_audience.json"), "meta_ads", "audience")
    assert age_gender == {
        "source": "meta_ads", "account_id": "1234567890", "currency": "USD",
        "campaign_id": "23851234567890123", "date": date(2025, 3, 14),
        "age": "25-34", "gender": "female",
        "impressions": 12000, "clicks": 300, "reach": 9000, "spend": Decimal("150.25"),
        "conversions": Decimal(4), "conversion_value": Decimal(200),
        "extra": {"date_stop": "2025-03-14",
                  "actions": [{"action_type": "omni_purchase", "value": "4"}],
                  "action_values": [{"action_type": "omni_purchase", "value": "200"}]},
    }
    assert placement == {
        "source": "meta_ads", "account_id": "1234567890", "currency": "USD",
        "campaign_id": "23851234567890123", "date": date(2025, 3, 14),
        "platform": "instagram", "device": "mobile_app",
        "impressions": 8000, "clicks": 120, "spend": Decimal(80),
        "extra": {"date_stop": "2025-03-14", "platform_position": "instagram_stories"},
    }


def test_meta_native_conversions_list_is_not_taken_for_a_number() -> None:
    row = {"campaign_id": "1", "conversions": [{"action_type": "purchase", "value": "2"}],
           "actions": [{"action_type": "purchase", "value": "3"}]}
    [record] = records({"records": [row]}, "meta_ads", "campaign_performance")
    assert record["conversions"] == Decimal(3)
    assert record["extra"]["platform_conversions"] == row["conversions"]


def test_meta_actions_as_csv_columns_or_json_text() -> None:
    rows = [
        {"campaign_id": "1", "actions": {"omni_purchase": "7", "link_click": "70"}},
        {"campaign_id": "2", "actions": '[{"action_type": "omni_purchase", "value": "8"}]'},
        {"campaign_id": "3", "actions": ""},
    ]
    got = records({"records": rows}, "meta_ads", "campaign_performance")
    assert [r["conversions"] for r in got] == [Decimal(7), Decimal(8), Decimal(0)]


def test_meta_malformed_actions_are_refused_with_the_reason() -> None:
    rows = [
        {"campaign_id": "1", "actions": [{"action_type": "omni_purchase", "value": "many"}]},
        {"campaign_id": "2", "actions": [{"value": "1"}]},
        {"campaign_id": "3", "actions": "[not json"},
    ]
    messages = refusals({"records": rows}, "meta_ads", "campaign_performance")
    assert messages == [
        "meta_ads: actions: omni_purchase has a value that is not a number: 'many'",
        "meta_ads: actions must be a list of {action_type, value} objects, got {'value': '1'}",
        "meta_ads: actions is not a list of actions: '[not json'",
    ]


def test_numbers_out_of_range_refuse_their_row_in_the_adapters() -> None:
    """Where an overflow of the decimal arithmetic (Meta's sums, Google's micros) would
    have failed the whole batch."""
    meta = refusals({"records": [{"campaign_id": "1", "actions": [
        {"action_type": "omni_purchase", "value": "9e999999"},
        {"action_type": "omni_purchase", "value": "9e999999"}]}]},
        "meta_ads", "campaign_performance")
    assert len(meta) == 1 and "omni_purchase: number out of range: '9e999999'" in meta[0]
    google = refusals({"results": [{"campaign": {"id": "1"}, "segments": {"date": "2025-01-01"},
                                    "metrics": {"costMicros": "1e999999999"}}]},
                      "google_ads", "campaign_performance")
    assert len(google) == 1 and "out of range: '1e999999999'" in google[0]


def test_meta_options_fill_account_and_currency() -> None:
    [record] = records({"records": [{"campaign_id": "1"}]}, "meta_ads", "campaign_performance",
                       {"account_id": "act_9", "currency": "GBP"})
    assert (record["account_id"], record["currency"]) == ("act_9", "GBP")


# --- Google Ads -------------------------------------------------------------------------


@pytest.mark.parametrize("value,expected", [
    (130319306, "130.319306"), ("130319306", "130.319306"), ("12345000", "12.345000"),
    (0, "0.000000"), ("1", "0.000001"), (990000.0, "0.9900000"), (None, None), ("  ", None),
])
def test_micros_are_converted_exactly(value: Any, expected: str | None) -> None:
    money = micros_to_money(value)
    assert money == (None if expected is None else Decimal(expected))
    if expected is not None:
        assert str(money) == expected


@pytest.mark.parametrize("value,error", [
    ("abc", ValueError), ("NaN", ValueError), (True, TypeError), ([1], TypeError),
])
def test_bad_micros_raise_a_clear_error(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="must be"):
        micros_to_money(value, "metrics.costMicros")


def test_google_search_stream_response() -> None:
    first, second, third = records(load("google_ads_search_stream.json"), "google_ads",
                                   "campaign_performance")
    assert first == {
        "source": "google_ads",
        "account_id": "1234567890",
        "currency": "EUR",
        "campaign_id": "111",
        "campaign_name": "Brand Search",
        "date": date(2025, 1, 15),
        "impressions": 1234,
        "clicks": 56,
        "spend": Decimal("130.319306"),
        "conversions": Decimal("3.0"),
        "conversion_value": Decimal("120.5"),
        "extra": {
            "customer.resourceName": "customers/1234567890",
            "customer.descriptiveName": "Acme",
            "campaign.resourceName": "customers/1234567890/campaigns/111",
            "campaign.status": "ENABLED",
            # Google's own ratios keep their GAQL names: never the canonical ctr / cpc.
            "metrics.ctr": 0.04538087520259319,
            "metrics.averageCpc": 2327130.4642857143,
        },
    }
    # No customer selected: the account comes from the campaign's resource name.
    assert second == {
        "source": "google_ads", "account_id": "1234567890", "campaign_id": "222",
        "campaign_name": "Generic Search", "date": date(2025, 1, 15), "impressions": 10,
        "clicks": 0, "spend": Decimal(0), "conversions": Decimal(0),
        "conversion_value": Decimal(0),
        "extra": {"campaign.resourceName": "customers/1234567890/campaigns/222"},
    }
    # A row without its campaign is a record without campaign_id (validation reports it).
    assert third == {
        "source": "google_ads", "account_id": "1234567890", "currency": "EUR",
        "date": date(2025, 1, 16), "impressions": 5, "clicks": 1, "spend": Decimal("0.99"),
    }


def test_google_search_response_at_ad_grain() -> None:
    [record] = records(load("google_ads_search_ads.json"), "google_ads", "ad_performance")
    assert record == {
        "source": "google_ads", "account_id": "1234567890", "currency": "USD",
        "campaign_id": "111", "campaign_name": "Brand Search",
        "adset_id": "333", "adset_name": "Exact", "ad_id": "444", "ad_name": "RSA 1",
        "date": date(2025, 1, 15), "impressions": 700, "clicks": 35,
        "spend": Decimal("12.345678"), "conversions": Decimal("1.5"),
        "conversion_value": Decimal("60.25"),
        "extra": {
            "adGroup.resourceName": "customers/1234567890/adGroups/333",
            "adGroupAd.resourceName": "customers/1234567890/adGroupAds/333~444",
            "adGroupAd.ad.resourceName": "customers/1234567890/ads/444",
            "segments.device": "MOBILE",
        },
    }


def test_google_audience_segments_and_criteria() -> None:
    row = {
        "campaign": {"id": "1"},
        "adGroupCriterion": {"ageRange": {"type": "AGE_RANGE_25_34"}, "criterionId": "503002"},
        "segments": {"date": "2025-01-15", "device": "MOBILE", "adNetworkType": "SEARCH"},
        "metrics": {"costMicros": "1500000"},
    }
    [record] = records({"records": [row]}, "google_ads", "audience")
    assert record == {
        "source": "google_ads", "campaign_id": "1", "age": "AGE_RANGE_25_34",
        "date": date(2025, 1, 15), "device": "MOBILE", "platform": "SEARCH",
        "spend": Decimal("1.5"), "extra": {"adGroupCriterion.criterionId": "503002"},
    }


def test_google_snake_case_and_flat_dotted_names() -> None:
    nested = {"customer": {"id": "9", "currency_code": "EUR"}, "campaign": {"id": "1"},
              "metrics": {"cost_micros": "2500000", "conversions_value": "3.5"}}
    flat = {"customer.id": "9", "customer.currency_code": "EUR", "campaign.id": "1",
            "metrics.cost_micros": "2500000", "metrics.conversions_value": "3.5"}
    expected = {"source": "google_ads", "account_id": "9", "currency": "EUR",
                "campaign_id": "1", "spend": Decimal("2.5"), "conversion_value": Decimal("3.5")}
    assert records({"records": [nested, flat]}, "google_ads", "campaign_performance") == [
        expected, expected]


def test_google_bad_micros_refuse_the_record_with_the_field_name() -> None:
    row = {"campaign": {"id": "1"}, "metrics": {"costMicros": "12.3.4"}}
    assert refusals({"records": [row]}, "google_ads", "campaign_performance") == [
        "google_ads: metrics.costMicros must be a number of micros, got '12.3.4'"]


# --- TikTok -----------------------------------------------------------------------------


def test_tiktok_report_response() -> None:
    first, second = records(load("tiktok_ads_report.json"), "tiktok_ads",
                            "campaign_performance", {"currency": "USD"})
    assert first == {
        "source": "tiktok_ads", "account_id": "7000000000000001", "currency": "USD",
        "campaign_id": "1780000000000001", "campaign_name": "Launch",
        "date": date(2025, 11, 12), "spend": Decimal("12.30"), "impressions": 1000,
        "clicks": 20, "reach": 800, "conversions": Decimal(2),
        "conversion_value": Decimal("59.80"),
        # TikTok's ctr and conversion_rate are percentages: kept apart, never canonical.
        "extra": {"platform_ctr": "2.00", "platform_cpc": "0.62", "platform_cpm": "12.30",
                  "platform_conversion_rate": "10.00", "cost_per_conversion": "6.15"},
    }
    assert second == {
        "source": "tiktok_ads", "account_id": "7000000000000001", "currency": "USD",
        "campaign_id": "1780000000000002", "campaign_name": "Evergreen",
        "date": date(2025, 11, 12), "spend": Decimal("0.00"), "impressions": 0, "clicks": 0,
        "reach": None, "conversions": None, "conversion_value": None,
        "extra": {"platform_ctr": None, "platform_cpc": None, "platform_cpm": None,
                  "platform_conversion_rate": None, "cost_per_conversion": None},
    }


def test_tiktok_audience_report() -> None:
    age_gender, geo = records(load("tiktok_ads_audience.json"), "tiktok_ads", "audience")
    assert age_gender == {
        "source": "tiktok_ads", "account_id": "7000000000000001",
        "campaign_id": "1780000000000001", "date": date(2025, 11, 12),
        "age": "AGE_25_34", "gender": "FEMALE",
        "spend": Decimal("5.10"), "impressions": 400, "clicks": 9, "conversions": Decimal(1),
    }
    assert geo == {
        "source": "tiktok_ads", "account_id": "7000000000000001",
        "campaign_id": "1780000000000001", "date": date(2025, 11, 12),
        "country": "US", "device": "ANDROID", "platform": "PLACEMENT_TIKTOK",
        "spend": Decimal("7.20"), "impressions": 600, "clicks": 11, "conversions": None,
    }


def test_tiktok_flat_export_rows() -> None:
    row = {"stat_time_day": "2025-11-12", "campaign_id": "5", "adgroup_id": "6",
           "adgroup_name": "AG", "ad_id": "7", "spend": "-", "conversion": "3", "ctr": "1.5"}
    [record] = records({"records": [row]}, "tiktok_ads", "ad_performance")
    assert record == {
        "source": "tiktok_ads", "date": date(2025, 11, 12), "campaign_id": "5",
        "adset_id": "6", "adset_name": "AG", "ad_id": "7", "spend": None,
        "conversions": Decimal(3), "extra": {"platform_ctr": "1.5"},
    }
    canonical_with_dash = {"campaign_id": "5", "spend": "-"}
    [record] = records({"records": [canonical_with_dash]}, "tiktok_ads", "campaign_performance")
    assert record == {"source": "tiktok_ads", "campaign_id": "5", "spend": None}


# --- LinkedIn ---------------------------------------------------------------------------


def test_linkedin_analytics_response() -> None:
    daily, monthly = records(load("linkedin_ads_analytics.json"), "linkedin_ads",
                             "campaign_performance", {"account_id": "508000000",
                                                      "currency": "EUR"})
    assert daily == {
        "source": "linkedin_ads", "account_id": "508000000", "currency": "EUR",
        "campaign_id": "123456", "date": date(2025, 1, 15), "impressions": 100, "clicks": 5,
        "spend": Decimal("12.5"), "conversions": Decimal(1),
        "conversion_value": Decimal("40.0"), "reach": 80,
        "extra": {"costInUsd": "13.1", "landingPageClicks": 4},
    }
    assert monthly == {
        "source": "linkedin_ads", "account_id": "508000000", "currency": "EUR",
        "campaign_id": "654321", "date": date(2025, 1, 1), "impressions": 2500, "clicks": 48,
        "spend": Decimal("310.75"), "conversions": Decimal(0), "conversion_value": Decimal(0),
        "extra": {"costInUsd": "325.02", "date_end": "2025-01-31"},
    }


def test_linkedin_pivots() -> None:
    rows = [
        {"pivotValues": ["urn:li:sponsoredCampaign:1", "urn:li:sponsoredCreative:2"],
         "dateRange": {"start": {"year": 2025, "month": 2, "day": 28}}},
        {"pivot": "CAMPAIGN", "pivotValue": "urn:li:sponsoredCampaign:3",
         "approximateUniqueImpressions": 10},
        {"pivotValues": ["urn:li:sponsoredCampaign:4", "urn:li:organization:5"]},
    ]
    first, second, third = records({"records": rows}, "linkedin_ads", "ad_performance")
    assert first == {"source": "linkedin_ads", "campaign_id": "1", "ad_id": "2",
                     "date": date(2025, 2, 28)}
    assert second == {"source": "linkedin_ads", "campaign_id": "3", "reach": 10,
                      "extra": {"pivot": "CAMPAIGN"}}
    assert third == {"source": "linkedin_ads", "campaign_id": "4",
                     "extra": {"pivotValues": rows[2]["pivotValues"]}}


def test_linkedin_urn_and_date_helpers() -> None:
    assert parse_urn("urn:li:sponsoredCampaign:123") == ("sponsoredCampaign", "123")
    assert linkedin_date({"year": 2025, "month": 1, "day": 15}) == date(2025, 1, 15)
    for bad in ("123", "urn:li:sponsoredCampaign", None):
        with pytest.raises(ValueError, match="expected a LinkedIn URN"):
            parse_urn(bad)
    for bad_date in ({"year": 2025, "month": 2, "day": 30}, {"year": "2025"}, "2025-01-15"):
        with pytest.raises(ValueError, match=r"must be \{year, month, day\}"):
            linkedin_date(bad_date)


def test_linkedin_bad_rows_are_refused_with_the_reason() -> None:
    rows = [
        {"pivotValues": ["123"]},
        {"dateRange": {"start": {"year": 2025, "month": 13, "day": 1}}},
    ]
    assert refusals({"records": rows}, "linkedin_ads", "campaign_performance") == [
        "linkedin_ads: pivotValues[0]: expected a LinkedIn URN like "
        "urn:li:sponsoredCampaign:123, got '123'",
        "linkedin_ads: dateRange.start must be {year, month, day}, got "
        "{'year': 2025, 'month': 13, 'day': 1}",
    ]
