"""Every source adapter end to end over HTTP: native payloads in, the exact stored values out.

Each platform's fixture (tests/fixtures/sources/) is the platform's own response shape:
numbers as strings, money in micros, nested action lists, "-" for a missing metric,
YYYYMMDD dates, URNs, HubSpot `properties`, Salesforce `attributes`. It is posted to
/ingest as the whole response and as `{"records": [native rows]}`, the job runs the
whole chain on a live worker, and the rows are read back through /retrieve and compared
column by column, `extra` included, with values written out by hand from the fixture.
Derived ratios are recomputed here from the raw values; where the quotient does not
terminate the comparison is pytest.approx, everywhere else it is exact.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tasks.datatypes import DATA_TYPES

FIXTURES = Path(__file__).parent / "fixtures" / "sources"
INGEST = "/api/v1/data_pipeline/ingest"
# Columns set by the store stage, not by the data.
LINEAGE = frozenset({"id", "job_id", "accepted_at", "ingested_at", "updated_at"})
KNOWN_SOURCES = ("ga4, generic, google_ads, hubspot, linkedin_ads, meta_ads, salesforce, "
                 "tiktok_ads")
SHAPES = ("response", "records")


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class Near:
    """A float that is inherently inexact (a non-terminating quotient): pytest.approx."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, int | float) and not isinstance(other, bool)
                and other == pytest.approx(self.value, rel=1e-12))

    def __repr__(self) -> str:
        return f"≈{self.value!r}"


class Instant:
    """An ISO 8601 datetime string naming this instant, whatever UTC offset it is written in."""

    def __init__(self, text: str) -> None:
        self.value = datetime.fromisoformat(text)
        assert self.value.tzinfo is not None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, str) or "T" not in other:
            return False
        try:
            return datetime.fromisoformat(other) == self.value
        except ValueError:
            return False

    def __repr__(self) -> str:
        return f"Instant({self.value.isoformat()})"


def near(value: float) -> Near:
    return Near(value)


def _same(actual: Any, expected: Any) -> bool:
    if expected is None or isinstance(expected, bool):
        return actual is expected
    if isinstance(expected, str):
        return isinstance(actual, str) and actual == expected
    if isinstance(expected, int | float):
        return (isinstance(actual, int | float) and not isinstance(actual, bool)
                and actual == expected)
    return bool(expected == actual)  # Near, Instant, and `extra` (a JSON object)


def row(data_type: str, **values: Any) -> dict[str, Any]:
    """Every stored column of `data_type` (lineage aside): None unless given."""
    columns = [c for c in DATA_TYPES[data_type].all_columns if c not in LINEAGE]
    unknown = set(values) - set(columns)
    assert not unknown, f"not columns of {data_type}: {unknown}"
    return {column: values.get(column) for column in columns}


def assert_record(record: dict[str, Any], expected: dict[str, Any]) -> None:
    actual = {key: value for key, value in record.items() if key not in LINEAGE}
    wrong = {
        key: {"stored": actual.get(key, "<absent>"), "expected": value}
        for key, value in expected.items()
        if key not in actual or not _same(actual[key], value)
    }
    unexpected = sorted(set(actual) - set(expected))
    assert not wrong and not unexpected, f"wrong: {wrong}; unexpected columns: {unexpected}"


def stored(retrieve: Callable[[dict[str, Any]], dict[str, Any]], data_type: str,
           key: Callable[[dict[str, Any]], Any], **filters: Any) -> dict[Any, dict[str, Any]]:
    """Every stored row of `data_type` matching `filters`, by `key` (which must be unique)."""
    result = retrieve({"data_type": data_type, "filters": filters, "sort": ["id"],
                       "limit": 1000})
    assert result["status"] == "success"
    assert result["total_count"] == result["records_count"] == len(result["records"])
    rows = {key(record): record for record in result["records"]}
    assert len(rows) == len(result["records"]), f"duplicate keys: {result['records']}"
    return rows


def ingest_ok(run_job, source: str, data_type: str, data: Any,  # type: ignore[no-untyped-def]
              ingestion_options: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"source": source, "data_type": data_type, "data": data}
    if ingestion_options is not None:
        body["ingestion_options"] = ingestion_options
    job = run_job("ingest", body)
    assert job["status"] == "succeeded", job
    assert job["source"] == source and job["data_type"] == data_type
    return job


def stage_counts(job: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """{stage: (records_in, records_out)}; also checks every stage succeeded."""
    assert all(stage["status"] == "succeeded" for stage in job["stages"]), job["stages"]
    return {stage["name"]: (stage["records_in"], stage["records_out"])
            for stage in job["stages"]}


def all_kept(n: int) -> dict[str, tuple[int, int]]:
    return {stage: (n, n) for stage in ("ingest", "validate", "process", "store")}


def rejected(client, job_id: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    response = client.get(f"/api/v1/jobs/{job_id}/rejected")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["total_count"] == body["records_count"] == len(body["records"])
    return body["records"]


def check_lineage(records: dict[Any, dict[str, Any]], job: dict[str, Any]) -> None:
    for record in records.values():
        assert record["job_id"] == job["job_id"]
        assert isinstance(record["ingested_at"], str) and "T" in record["ingested_at"]
        assert record["accepted_at"] == job["created_at"].replace("Z", "+00:00")


# --------------------------------------------------------------------------- Meta Ads


def meta_insights_expected(response: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spring, retargeting, _awareness = response["data"]
    common = {"source": "meta_ads", "account_id": "1234567890", "date": "2025-03-14",
              "currency": "EUR"}
    return {
        "23851234567890123": row(
            "campaign_performance", **common,
            campaign_id="23851234567890123", campaign_name="Spring Sale",
            spend=5339.5, impressions=361324, clicks=4210, reach=201455,
            # omni_purchase only: the same purchases also appear as purchase and
            # offsite_conversion.fb_pixel_purchase (41 each) and are not added.
            conversions=43, conversion_value=3870.1,
            ctr=near(4210 / 361324), cpc=near(5339.5 / 4210), cpm=near(5339.5 * 1000 / 361324),
            cpa=near(5339.5 / 43), conversion_rate=near(43 / 4210),
            roas=near(3870.10 / 5339.5), frequency=near(361324 / 201455),
            extra={
                "account_name": "Acme Shop", "date_stop": "2025-03-14",
                "inline_link_clicks": "3980",
                # Meta's own ratios, kept under platform_* names and not used.
                "platform_frequency": "1.793571", "platform_cpc": "1.26829",
                "platform_cpm": "14.777762", "platform_ctr": "1.165159",
                "actions": spring["actions"], "action_values": spring["action_values"],
            },
        ),
        "23851234567890456": row(
            "campaign_performance", **common,
            campaign_id="23851234567890456", campaign_name="Retargeting",
            spend=0, impressions=1000, clicks=0, reach=None,
            conversions=2, conversion_value=99.9,  # the pixel type, the only one present
            ctr=0, cpc=None, cpm=0, cpa=0, conversion_rate=None, roas=None, frequency=None,
            extra={"date_stop": "2025-03-14", "actions": retargeting["actions"],
                   "action_values": retargeting["action_values"]},
        ),
        "23851234567890789": row(
            "campaign_performance", **common,
            campaign_id="23851234567890789", campaign_name="Awareness",
            spend=12.34, impressions=500, clicks=7,
            conversions=None, conversion_value=None,  # no `actions`: unknown, not zero
            ctr=0.014, cpc=near(12.34 / 7), cpm=24.68, cpa=None, conversion_rate=None,
            roas=None, frequency=None,
            extra={"date_stop": "2025-03-14"},
        ),
    }


@pytest.mark.usefixtures("clean_tables")
@pytest.mark.parametrize("shape", SHAPES)
def test_meta_ads_insights(run_job, retrieve, shape):
    response = load("meta_ads_insights.json")
    data = response if shape == "response" else {"records": copy.deepcopy(response["data"])}
    job = ingest_ok(run_job, "meta_ads", "campaign_performance", data)
    assert stage_counts(job) == all_kept(3)
    assert job["result"]["inserted"] == 3

    rows = stored(retrieve, "campaign_performance", lambda r: r["campaign_id"],
                  source="meta_ads")
    expected = meta_insights_expected(response)
    assert sorted(rows) == sorted(expected)
    for campaign_id, record in rows.items():
        assert_record(record, expected[campaign_id])
    check_lineage(rows, job)


@pytest.mark.usefixtures("clean_tables")
def test_meta_ads_conversion_action_types_option_chooses_what_counts(run_job, retrieve):
    response = load("meta_ads_insights.json")
    ingest_ok(run_job, "meta_ads", "campaign_performance", response,
              {"conversion_action_types": ["offsite_conversion.fb_pixel_purchase"]})
    rows = stored(retrieve, "campaign_performance", lambda r: r["campaign_id"],
                  source="meta_ads")
    spring = rows["23851234567890123"]
    assert spring["conversions"] == 41 and spring["conversion_value"] == 3690.55
    assert spring["cpa"] == pytest.approx(5339.5 / 41, rel=1e-12)
    assert spring["roas"] == pytest.approx(3690.55 / 5339.5, rel=1e-12)
    assert rows["23851234567890456"]["conversions"] == 2
    assert rows["23851234567890456"]["conversion_value"] == 99.9
    assert rows["23851234567890789"]["conversions"] is None


@pytest.mark.usefixtures("clean_tables")
@pytest.mark.parametrize("shape", SHAPES)
def test_meta_ads_audience(run_job, retrieve, shape):
    response = load("meta_ads_audience.json")
    data = response if shape == "response" else {"records": copy.deepcopy(response["data"])}
    job = ingest_ok(run_job, "meta_ads", "audience", data)
    assert stage_counts(job) == all_kept(2)

    rows = stored(retrieve, "audience", lambda r: (r["age"], r["platform"]), source="meta_ads")
    common = {"source": "meta_ads", "account_id": "1234567890", "currency": "USD",
              "campaign_id": "23851234567890123", "date": "2025-03-14"}
    by_age = response["data"][0]
    assert sorted(rows, key=str) == sorted([("25-34", None), (None, "instagram")], key=str)
    assert_record(rows["25-34", None], row(
        "audience", **common, age="25-34", gender="female",
        impressions=12000, clicks=300, reach=9000, spend=150.25,
        conversions=4, conversion_value=200,
        ctr=0.025, cpc=near(150.25 / 300), cpm=near(150.25 * 1000 / 12000), cpa=37.5625,
        conversion_rate=near(4 / 300), roas=near(200 / 150.25), frequency=near(12000 / 9000),
        extra={"date_stop": "2025-03-14", "actions": by_age["actions"],
               "action_values": by_age["action_values"]},
    ))
    assert_record(rows[None, "instagram"], row(
        "audience", **common, platform="instagram", device="mobile_app",
        impressions=8000, clicks=120, spend=80,
        ctr=0.015, cpc=near(80 / 120), cpm=10, cpa=None, conversion_rate=None, roas=None,
        frequency=None,
        extra={"date_stop": "2025-03-14", "platform_position": "instagram_stories"},
    ))
    check_lineage(rows, job)


@pytest.mark.usefixtures("clean_tables")
def test_meta_ads_own_conversions_field_is_kept_apart_from_conversions(run_job, retrieve):
    # Meta's `conversions` / `conversion_values` fields are action lists (custom
    # conversions), not a number: kept as platform_*; conversions come from `actions`.
    native = {
        "account_id": "1234567890", "campaign_id": "mc-1", "date_start": "2025-03-15",
        "date_stop": "2025-03-15", "impressions": "100", "clicks": "10", "spend": "20",
        "actions": [{"action_type": "purchase", "value": "2"}],
        "action_values": [{"action_type": "purchase", "value": "50.5"}],
        "conversions": [{"action_type": "offsite_conversion.fb_pixel_custom", "value": "7"}],
        "conversion_values": [{"action_type": "offsite_conversion.fb_pixel_custom",
                               "value": "70"}],
    }
    job = ingest_ok(run_job, "meta_ads", "campaign_performance",
                    {"data": [native], "paging": {"cursors": {}}})
    rows = stored(retrieve, "campaign_performance", lambda r: r["campaign_id"],
                  source="meta_ads")
    assert list(rows) == ["mc-1"]
    assert_record(rows["mc-1"], row(
        "campaign_performance", source="meta_ads", account_id="1234567890",
        campaign_id="mc-1", date="2025-03-15", impressions=100, clicks=10, spend=20,
        conversions=2, conversion_value=50.5,
        ctr=0.1, cpc=2, cpm=200, cpa=10, conversion_rate=0.2, roas=2.525,
        extra={"date_stop": "2025-03-15", "actions": native["actions"],
               "action_values": native["action_values"],
               "platform_conversions": native["conversions"],
               "platform_conversion_values": native["conversion_values"]},
    ))
    check_lineage(rows, job)


# --------------------------------------------------------------------------- Google Ads


def _stream_rows(stream: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [result for batch in stream for result in batch.get("results", [])]


@pytest.mark.usefixtures("clean_tables")
@pytest.mark.parametrize("shape", SHAPES)
def test_google_ads_search_stream(client, run_job, retrieve, shape):
    stream = load("google_ads_search_stream.json")
    data = stream if shape == "response" else {"records": _stream_rows(stream)}
    job = ingest_ok(run_job, "google_ads", "campaign_performance", data)
    # The third row (second batch) has no campaign: refused on its own, the rest stored.
    assert stage_counts(job) == {"ingest": (3, 3), "validate": (3, 2), "process": (2, 2),
                                 "store": (2, 2)}

    rows = stored(retrieve, "campaign_performance", lambda r: r["campaign_id"],
                  source="google_ads")
    assert sorted(rows) == ["111", "222"]
    assert_record(rows["111"], row(
        "campaign_performance", source="google_ads", account_id="1234567890",
        currency="EUR", campaign_id="111", campaign_name="Brand Search", date="2025-01-15",
        impressions=1234, clicks=56,
        spend=130.319306,  # costMicros "130319306" / 1,000,000
        conversions=3, conversion_value=120.5,
        ctr=near(56 / 1234), cpc=near(130.319306 / 56), cpm=near(130319.306 / 1234),
        cpa=near(130.319306 / 3), conversion_rate=near(3 / 56), roas=near(120.5 / 130.319306),
        frequency=None,
        extra={
            "customer.resourceName": "customers/1234567890",
            "customer.descriptiveName": "Acme",
            "campaign.resourceName": "customers/1234567890/campaigns/111",
            "campaign.status": "ENABLED",
            # Google's own ratios stay in extra; ctr and cpc above are recomputed.
            "metrics.ctr": 0.04538087520259319,
            "metrics.averageCpc": 2327130.4642857143,
        },
    ))
    assert_record(rows["222"], row(
        "campaign_performance", source="google_ads",
        account_id="1234567890",  # from the campaign's resourceName: no customer object
        currency=None, campaign_id="222", campaign_name="Generic Search", date="2025-01-15",
        impressions=10, clicks=0, spend=0, conversions=0, conversion_value=0,
        ctr=0, cpc=None, cpm=0, cpa=None, conversion_rate=None, roas=None, frequency=None,
        extra={"campaign.resourceName": "customers/1234567890/campaigns/222"},
    ))
    check_lineage(rows, job)

    [refused] = rejected(client, job["job_id"])
    assert refused["stage"] == "validate"
    assert refused["record_index"] == 2
    assert refused["record"]["spend"] == "0.990000"  # 990000 micros, a Decimal as JSON text
    assert [(r["rule"], r["field"]) for r in refused["reasons"]] == [("required", "campaign_id")]
    assert "campaign_id" in refused["reasons"][0]["message"]


@pytest.mark.usefixtures("clean_tables")
@pytest.mark.parametrize("shape", SHAPES)
def test_google_ads_search_at_ad_grain(run_job, retrieve, shape):
    response = load("google_ads_search_ads.json")
    data = response if shape == "response" else {"records": copy.deepcopy(response["results"])}
    job = ingest_ok(run_job, "google_ads", "ad_performance", data)
    assert stage_counts(job) == all_kept(1)

    rows = stored(retrieve, "ad_performance", lambda r: r["ad_id"], source="google_ads")
    assert list(rows) == ["444"]
    assert_record(rows["444"], row(
        "ad_performance", source="google_ads", account_id="1234567890", currency="USD",
        campaign_id="111", campaign_name="Brand Search", adset_id="333", adset_name="Exact",
        ad_id="444", ad_name="RSA 1", date="2025-01-15",
        impressions=700, clicks=35, spend=12.345678, conversions=1.5, conversion_value=60.25,
        ctr=0.05, cpc=near(12.345678 / 35), cpm=near(12345.678 / 700), cpa=8.230452,
        conversion_rate=near(1.5 / 35), roas=near(60.25 / 12.345678), frequency=None,
        extra={
            "adGroup.resourceName": "customers/1234567890/adGroups/333",
            "adGroupAd.resourceName": "customers/1234567890/adGroupAds/333~444",
            "adGroupAd.ad.resourceName": "customers/1234567890/ads/444",
            "segments.device": "MOBILE",
        },
    ))
    check_lineage(rows, job)


# --------------------------------------------------------------------------- TikTok Ads


def tiktok_report_expected(currency: str | None) -> dict[str, dict[str, Any]]:
    common = {"source": "tiktok_ads", "account_id": "7000000000000001", "currency": currency,
              "date": "2025-11-12"}  # stat_time_day "2025-11-12 00:00:00"
    return {
        "1780000000000001": row(
            "campaign_performance", **common, campaign_id="1780000000000001",
            campaign_name="Launch", spend=12.3, impressions=1000, clicks=20, reach=800,
            conversions=2, conversion_value=59.8,
            # Recomputed: TikTok's ctr "2.00" and conversion_rate "10.00" are percentages.
            ctr=0.02, cpc=0.615, cpm=12.3, cpa=6.15, conversion_rate=0.1,
            roas=near(59.80 / 12.30), frequency=1.25,
            extra={"platform_ctr": "2.00", "platform_cpc": "0.62", "platform_cpm": "12.30",
                   "platform_conversion_rate": "10.00", "cost_per_conversion": "6.15"},
        ),
        "1780000000000002": row(
            "campaign_performance", **common, campaign_id="1780000000000002",
            campaign_name="Evergreen", spend=0, impressions=0, clicks=0,
            reach=None, conversions=None, conversion_value=None,  # "-": missing, not zero
            ctr=None, cpc=None, cpm=None, cpa=None, conversion_rate=None, roas=None,
            frequency=None,
            extra={"platform_ctr": None, "platform_cpc": None, "platform_cpm": None,
                   "platform_conversion_rate": None, "cost_per_conversion": None},
        ),
    }


@pytest.mark.usefixtures("clean_tables")
@pytest.mark.parametrize("shape", SHAPES)
def test_tiktok_ads_report(run_job, retrieve, shape):
    response = load("tiktok_ads_report.json")
    data = (response if shape == "response"
            else {"records": copy.deepcopy(response["data"]["list"])})
    # TikTok report rows do not name the currency: the ingestion option fills it.
    job = ingest_ok(run_job, "tiktok_ads", "campaign_performance", data, {"currency": "USD"})
    assert stage_counts(job) == all_kept(2)

    rows = stored(retrieve, "campaign_performance", lambda r: r["campaign_id"],
                  source="tiktok_ads")
    expected = tiktok_report_expected("USD")
    assert sorted(rows) == sorted(expected)
    for campaign_id, record in rows.items():
        assert_record(record, expected[campaign_id])
    check_lineage(rows, job)


@pytest.mark.usefixtures("clean_tables")
@pytest.mark.parametrize("shape", SHAPES)
def test_tiktok_ads_audience(run_job, retrieve, shape):
    response = load("tiktok_ads_audience.json")
    data = (response if shape == "response"
            else {"records": copy.deepcopy(response["data"]["list"])})
    job = ingest_ok(run_job, "tiktok_ads", "audience", data)
    assert stage_counts(job) == all_kept(2)

    rows = stored(retrieve, "audience", lambda r: r["age"] or r["country"],
                  source="tiktok_ads")
    assert sorted(rows) == ["AGE_25_34", "US"]
    common = {"source": "tiktok_ads", "account_id": "7000000000000001",
              "campaign_id": "1780000000000001", "date": "2025-11-12"}
    assert_record(rows["AGE_25_34"], row(
        "audience", **common, age="AGE_25_34", gender="FEMALE",
        spend=5.1, impressions=400, clicks=9, conversions=1,
        ctr=0.0225, cpc=near(5.10 / 9), cpm=12.75, cpa=5.1, conversion_rate=near(1 / 9),
        roas=None, frequency=None,
    ))
    assert_record(rows["US"], row(
        "audience", **common, country="US",
        platform="PLACEMENT_TIKTOK",  # placement
        device="ANDROID",  # TikTok's `platform` dimension is the operating system
        spend=7.2, impressions=600, clicks=11, conversions=None,  # "-"
        ctr=near(11 / 600), cpc=near(7.20 / 11), cpm=12, cpa=None, conversion_rate=None,
        roas=None, frequency=None,
    ))
    check_lineage(rows, job)


# --------------------------------------------------------------------------- LinkedIn Ads


@pytest.mark.usefixtures("clean_tables")
@pytest.mark.parametrize("shape", SHAPES)
def test_linkedin_ads_analytics(run_job, retrieve, shape):
    response = load("linkedin_ads_analytics.json")
    data = response if shape == "response" else {"records": copy.deepcopy(response["elements"])}
    job = ingest_ok(run_job, "linkedin_ads", "campaign_performance", data,
                    {"currency": "EUR", "account_id": "508000111"})
    assert stage_counts(job) == all_kept(2)

    rows = stored(retrieve, "campaign_performance", lambda r: r["campaign_id"],
                  source="linkedin_ads")
    assert sorted(rows) == ["123456", "654321"]  # from urn:li:sponsoredCampaign:<id>
    common = {"source": "linkedin_ads", "account_id": "508000111", "currency": "EUR",
              "campaign_name": None}
    assert_record(rows["123456"], row(
        "campaign_performance", **common, campaign_id="123456", date="2025-01-15",
        impressions=100, clicks=5, spend=12.5, conversions=1, conversion_value=40,
        reach=80,
        ctr=0.05, cpc=2.5, cpm=125, cpa=12.5, conversion_rate=0.2, roas=3.2, frequency=1.25,
        extra={"landingPageClicks": 4, "costInUsd": "13.1"},
    ))
    assert_record(rows["654321"], row(
        "campaign_performance", **common, campaign_id="654321", date="2025-01-01",
        impressions=2500, clicks=48, spend=310.75, conversions=0, conversion_value=0,
        reach=None,
        ctr=0.0192, cpc=near(310.75 / 48), cpm=124.3, cpa=None, conversion_rate=0, roas=0,
        frequency=None,
        extra={"costInUsd": "325.02", "date_end": "2025-01-31"},
    ))
    check_lineage(rows, job)


# --------------------------------------------------------------------------- HubSpot


@pytest.mark.usefixtures("clean_tables")
@pytest.mark.parametrize("shape", SHAPES)
def test_hubspot_contacts(run_job, retrieve, shape):
    response = load("hubspot_contacts.json")
    data = response if shape == "response" else {"records": copy.deepcopy(response["results"])}
    job = ingest_ok(run_job, "hubspot", "crm_contacts", data)
    assert stage_counts(job) == all_kept(2)

    rows = stored(retrieve, "crm_contacts", lambda r: r["contact_id"], source="hubspot")
    assert sorted(rows) == ["501", "502"]
    assert_record(rows["501"], row(
        "crm_contacts", source="hubspot", contact_id="501", email="ana@example.com",
        first_name="Ana", last_name="Silva", company="Acme", country="PT",
        lifecycle_stage="marketingqualifiedlead", lead_status="OPEN",
        lead_source="ORGANIC_SEARCH",
        created_at=Instant("2025-01-05T12:00:00+00:00"),
        source_updated_at=Instant("2025-01-20T10:15:00+00:00"),
        extra={"hs_object_id": "501", "createdAt": "2025-01-05T12:00:00Z",
               "updatedAt": "2025-01-20T10:15:00Z", "archived": False},
    ))
    assert_record(rows["502"], row(
        "crm_contacts", source="hubspot", contact_id="502", email="bo@example.com",
        lifecycle_stage="subscriber",
        # No createdate / lastmodifieddate properties: the object's own timestamps.
        created_at=Instant("2025-01-06T07:00:00+00:00"),
        source_updated_at=Instant("2025-01-07T07:00:00+00:00"),
        extra={"hs_object_id": "502", "archived": False},
    ))
    check_lineage(rows, job)


@pytest.mark.usefixtures("clean_tables")
@pytest.mark.parametrize("shape", SHAPES)
def test_hubspot_deals(run_job, retrieve, shape):
    response = load("hubspot_deals.json")
    data = response if shape == "response" else {"records": copy.deepcopy(response["results"])}
    job = ingest_ok(run_job, "hubspot", "crm_deals", data)
    assert stage_counts(job) == all_kept(2)

    rows = stored(retrieve, "crm_deals", lambda r: r["deal_id"], source="hubspot")
    assert sorted(rows) == ["1001", "1002"]
    assert_record(rows["1001"], row(
        "crm_deals", source="hubspot", deal_id="1001", deal_name="Acme - Annual",
        stage="closedwon", pipeline="default",
        amount=1500,  # "1500.00"
        currency="EUR", probability=1,
        close_date="2025-02-01",  # closedate "2025-02-01T17:00:00Z"
        created_at=Instant("2025-01-10T09:30:00.123+00:00"),
        is_closed=True, is_won=True,  # "true"
        lead_source="PAID_SOCIAL", campaign_id=None,
        won=True, days_to_close=22,
        extra={"hs_lastmodifieddate": "2025-02-01T17:05:00Z", "hs_object_id": "1001",
               "createdAt": "2025-01-10T09:30:00.123Z", "updatedAt": "2025-02-01T17:05:00Z",
               "archived": False},
    ))
    assert_record(rows["1002"], row(
        "crm_deals", source="hubspot", deal_id="1002", deal_name="Globex - Pilot",
        stage="appointmentscheduled", pipeline="default", amount=None, currency=None,
        probability=0.2, close_date=None,
        created_at=Instant("2025-02-03T08:00:00+00:00"),  # the object's createdAt
        is_closed=False, is_won=False, lead_source=None,
        won=False, days_to_close=None,
        extra={"hs_object_id": "1002", "updatedAt": "2025-02-03T08:00:00Z",
               "archived": False},
    ))
    check_lineage(rows, job)


# --------------------------------------------------------------------------- Salesforce


@pytest.mark.usefixtures("clean_tables")
@pytest.mark.parametrize("shape", SHAPES)
def test_salesforce_leads(run_job, retrieve, shape):
    response = load("salesforce_leads.json")
    data = response if shape == "response" else {"records": copy.deepcopy(response["records"])}
    job = ingest_ok(run_job, "salesforce", "crm_contacts", data)
    assert stage_counts(job) == all_kept(1)

    rows = stored(retrieve, "crm_contacts", lambda r: r["contact_id"], source="salesforce")
    assert list(rows) == ["00QDn000003AbCdMAK"]
    assert_record(rows["00QDn000003AbCdMAK"], row(
        "crm_contacts", source="salesforce", contact_id="00QDn000003AbCdMAK",
        email="jo.park@example.com", first_name="Jo", last_name="Park", company="Initech",
        country="KR", lifecycle_stage=None, lead_status="Closed - Converted",
        lead_source="Partner Referral", is_converted=True, converted_date="2025-02-10",
        created_at=Instant("2025-01-20T14:45:00+00:00"),  # "...T14:45:00.000+0000"
        source_updated_at=Instant("2025-02-10T09:00:00+00:00"),
        currency="USD",
        extra={"ConvertedOpportunityId": "006Dn00000A1b2cIAB"},  # attributes dropped
    ))
    check_lineage(rows, job)


@pytest.mark.usefixtures("clean_tables")
@pytest.mark.parametrize("shape", SHAPES)
def test_salesforce_opportunities(run_job, retrieve, shape):
    response = load("salesforce_opportunities.json")
    data = response if shape == "response" else {"records": copy.deepcopy(response["records"])}
    job = ingest_ok(run_job, "salesforce", "crm_deals", data)
    assert stage_counts(job) == all_kept(2)

    rows = stored(retrieve, "crm_deals", lambda r: r["deal_id"], source="salesforce")
    assert sorted(rows) == ["006Dn00000A1b2cIAB", "006Dn00000A1b2dIAB"]
    assert_record(rows["006Dn00000A1b2cIAB"], row(
        "crm_deals", source="salesforce", deal_id="006Dn00000A1b2cIAB",
        deal_name="Acme - 500 licences", stage="Closed Won", amount=25000.5, currency="USD",
        probability=1,  # Probability 100 (percent) as a fraction
        close_date="2025-03-31", created_at=Instant("2025-01-15T10:00:00+00:00"),
        is_closed=True, is_won=True, lead_source="Web", campaign_id="701Dn000001XyZaIAK",
        won=True, days_to_close=75,
        extra={"ForecastCategoryName": "Closed"},
    ))
    assert_record(rows["006Dn00000A1b2dIAB"], row(
        "crm_deals", source="salesforce", deal_id="006Dn00000A1b2dIAB",
        deal_name="Globex - renewal", stage="Prospecting", amount=None, currency="EUR",
        probability=0.1, close_date="2025-06-30",
        created_at=Instant("2025-02-01T08:30:00+00:00"),
        is_closed=False, is_won=False, lead_source=None, campaign_id=None,
        won=False, days_to_close=149,
        extra={"ForecastCategoryName": "Pipeline"},
    ))
    check_lineage(rows, job)


# --------------------------------------------------------------------------- GA4


def ga4_expected(property_id: str) -> dict[str, dict[str, Any]]:
    common = {"source": "ga4", "property_id": property_id,
              "date": "2025-01-15",  # "20250115"
              "currency": "USD"}
    return {
        "google": row(
            "web_analytics", **common, session_source="google", session_medium="cpc",
            session_campaign="spring_sale", sessions=15, users=12, new_users=9, page_views=48,
            conversions=2,  # keyEvents
            revenue=120.5, conversion_rate=near(2 / 15), revenue_per_session=near(120.50 / 15),
            extra={"bounceRate": "0.4"},
        ),
        "(direct)": row(
            "web_analytics", **common, session_source="(direct)", session_medium="(none)",
            session_campaign="(not set)",
            sessions=7,  # "7.0"
            users=7, new_users=5, page_views=10, conversions=0, revenue=0,
            conversion_rate=0, revenue_per_session=0,
            extra={"bounceRate": "0.5714285714285714"},
        ),
    }


@pytest.mark.usefixtures("clean_tables")
def test_ga4_run_report(run_job, retrieve):
    job = ingest_ok(run_job, "ga4", "web_analytics", load("ga4_run_report.json"),
                    {"property_id": "321654987"})
    assert stage_counts(job) == all_kept(2)

    rows = stored(retrieve, "web_analytics", lambda r: r["session_source"], source="ga4")
    expected = ga4_expected("321654987")  # currency from metadata.currencyCode
    assert sorted(rows) == sorted(expected)
    for name, record in rows.items():
        assert_record(record, expected[name])
    check_lineage(rows, job)


def ga4_keyed_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's rows keyed by their GA4 header names, as an export would carry them."""
    names = [h["name"] for h in report["dimensionHeaders"] + report["metricHeaders"]]
    return [
        dict(zip(names, [v["value"] for v in r["dimensionValues"] + r["metricValues"]],
                 strict=True))
        for r in report["rows"]
    ]


@pytest.mark.usefixtures("clean_tables")
def test_ga4_rows_keyed_by_ga4_names(run_job, retrieve):
    records = ga4_keyed_rows(load("ga4_run_report.json"))
    assert records[0]["keyEvents"] == "2" and records[0]["date"] == "20250115"
    job = ingest_ok(run_job, "ga4", "web_analytics", {"records": records},
                    {"property_id": "321654988", "currency": "USD"})
    assert stage_counts(job) == all_kept(2)

    rows = stored(retrieve, "web_analytics", lambda r: r["session_source"], source="ga4")
    expected = ga4_expected("321654988")
    assert sorted(rows) == sorted(expected)
    for name, record in rows.items():
        assert_record(record, expected[name])


@pytest.mark.usefixtures("clean_tables")
def test_ga4_positional_rows_without_their_headers_are_refused_one_by_one(
        client, run_job, retrieve):
    report = load("ga4_run_report.json")
    keyed = ga4_keyed_rows(report)[0]
    positional = report["rows"][1]
    job = ingest_ok(run_job, "ga4", "web_analytics", {"records": [keyed, positional]},
                    {"property_id": "321654989"})
    assert stage_counts(job)["ingest"] == (2, 1)
    rows = stored(retrieve, "web_analytics", lambda r: r["session_source"],
                  property_id="321654989")
    assert list(rows) == ["google"]
    [refused] = rejected(client, job["job_id"])
    assert refused["stage"] == "ingest" and refused["record_index"] == 1
    assert refused["record"] == positional
    [reason] = refused["reasons"]
    assert reason["rule"] == "source_format"
    assert reason["message"].startswith("ga4: ") and "headers" in reason["message"]


@pytest.mark.usefixtures("clean_tables")
def test_ga4_batch_run_reports(run_job, retrieve):
    first = load("ga4_run_report.json")
    second = copy.deepcopy(first)
    for report_row in second["rows"]:
        report_row["dimensionValues"][0]["value"] = "20250116"
    second["metadata"]["currencyCode"] = "EUR"
    job = ingest_ok(run_job, "ga4", "web_analytics",
                    {"kind": "analyticsData#batchRunReports", "reports": [first, second]},
                    {"property_id": "321654990"})
    assert stage_counts(job) == all_kept(4)

    rows = stored(retrieve, "web_analytics", lambda r: (r["date"], r["session_source"]),
                  source="ga4")
    expected = {("2025-01-15", name): values
                for name, values in ga4_expected("321654990").items()}
    expected.update({
        # Each report's rows take that report's currency.
        ("2025-01-16", name): {**values, "date": "2025-01-16", "currency": "EUR"}
        for name, values in ga4_expected("321654990").items()
    })
    assert sorted(rows) == sorted(expected)
    for key, record in rows.items():
        assert_record(record, expected[key])


# --------------------------------------------------------------------------- files over HTTP


def post_file(client, body: bytes, content_type: str, query: str):  # type: ignore[no-untyped-def]
    return client.post(f"{INGEST}?{query}", data=body, content_type=content_type)


def accepted_job(client, job_waiter, body: bytes, content_type: str,  # type: ignore[no-untyped-def]
                 query: str, records: int) -> dict[str, Any]:
    response = post_file(client, body, content_type, query)
    assert response.status_code == 202, response.get_json()
    answer = response.get_json()
    assert answer["success"] is True and answer["status"] == "queued"
    assert answer["result"] == {"records_count": records, "status": "queued"}
    job = job_waiter(answer["job_id"])
    assert job["status"] == "succeeded", job
    return job


@pytest.mark.usefixtures("clean_tables")
@pytest.mark.parametrize("encoding", ["as-is", "bom-crlf"])
def test_google_ads_csv_export_over_http(client, job_waiter, retrieve, encoding):
    body = raw("google_ads_export.csv")
    if encoding == "bom-crlf":  # as spreadsheet software saves it
        body = b"\xef\xbb\xbf" + body.replace(b"\n", b"\r\n")
    job = accepted_job(client, job_waiter, body, "text/csv",
                       "source=google_ads&data_type=campaign_performance", 2)
    assert job["source"] == "google_ads"
    assert stage_counts(job) == all_kept(2)

    rows = stored(retrieve, "campaign_performance", lambda r: r["campaign_id"],
                  source="google_ads")
    assert sorted(rows) == ["111", "222"]
    common = {"source": "google_ads", "account_id": "1234567890", "currency": "EUR",
              "date": "2025-01-15"}
    assert_record(rows["111"], row(
        "campaign_performance", **common, campaign_id="111", campaign_name="Brand Search",
        impressions=1234, clicks=56, spend=130.319306,  # metrics.cost_micros 130319306
        conversions=3, conversion_value=120.5,
        ctr=near(56 / 1234), cpc=near(130.319306 / 56), cpm=near(130319.306 / 1234),
        cpa=near(130.319306 / 3), conversion_rate=near(3 / 56), roas=near(120.5 / 130.319306),
        frequency=None, extra=None,
    ))
    assert_record(rows["222"], row(
        "campaign_performance", **common, campaign_id="222", campaign_name="Generic Search",
        impressions=10, clicks=0, spend=0,
        conversions=None, conversion_value=None,  # empty cells
        ctr=0, cpc=None, cpm=0, cpa=None, conversion_rate=None, roas=None, frequency=None,
        extra=None,
    ))
    check_lineage(rows, job)


@pytest.mark.usefixtures("clean_tables")
def test_meta_ads_csv_export_over_http(client, job_waiter, retrieve):
    job = accepted_job(client, job_waiter, raw("meta_ads_export.csv"), "text/csv",
                       "source=meta_ads&data_type=campaign_performance", 2)
    assert stage_counts(job) == all_kept(2)

    rows = stored(retrieve, "campaign_performance", lambda r: r["campaign_id"],
                  source="meta_ads")
    assert sorted(rows) == ["23851234567890123", "23851234567890456"]
    assert_record(rows["23851234567890123"], row(
        "campaign_performance", source="meta_ads", campaign_id="23851234567890123",
        campaign_name="Spring Sale", date="2025-03-14",
        spend=5339.5, impressions=361324, clicks=4210,
        conversions=43, conversion_value=3870.1,  # actions.omni_purchase columns
        ctr=near(4210 / 361324), cpc=near(5339.5 / 4210), cpm=near(5339.5 * 1000 / 361324),
        cpa=near(5339.5 / 43), conversion_rate=near(43 / 4210), roas=near(3870.10 / 5339.5),
        frequency=None,
        extra={"actions": {"omni_purchase": "43"},
               "action_values": {"omni_purchase": "3870.10"},
               "platform_ctr": "1.165159"},
    ))
    assert_record(rows["23851234567890456"], row(
        "campaign_performance", source="meta_ads", campaign_id="23851234567890456",
        campaign_name="Retargeting, EU", date="2025-03-14",
        spend=0, impressions=1000, clicks=0,
        # The purchase columns are there and empty: no purchases.
        conversions=0, conversion_value=0,
        ctr=0, cpc=None, cpm=0, cpa=None, conversion_rate=None, roas=None, frequency=None,
        extra={"actions": {"omni_purchase": None}, "action_values": {"omni_purchase": None},
               "platform_ctr": None},
    ))
    check_lineage(rows, job)


@pytest.mark.usefixtures("clean_tables")
def test_ndjson_over_http(client, job_waiter, retrieve):
    job = accepted_job(client, job_waiter, raw("campaigns.ndjson"), "application/x-ndjson",
                       "source=generic&data_type=campaign_performance", 2)
    assert job["source"] == "generic"
    assert stage_counts(job) == all_kept(2)

    rows = stored(retrieve, "campaign_performance", lambda r: r["campaign_id"],
                  source="generic")
    assert sorted(rows) == ["123", "124"]
    assert_record(rows["123"], row(
        "campaign_performance", source="generic", campaign_id="123", date=None,
        spend=100, impressions=1000, clicks=50, conversions=5,
        ctr=0.05, cpc=2, cpm=100, cpa=20, conversion_rate=0.1, roas=None, frequency=None,
    ))
    assert_record(rows["124"], row(
        "campaign_performance", source="generic", campaign_id="124", date="2025-01-15",
        spend=20.5, impressions=10, clicks=1, conversions=0,
        ctr=0.1, cpc=20.5, cpm=2050, cpa=None, conversion_rate=0, roas=None, frequency=None,
    ))
    check_lineage(rows, job)


@pytest.mark.usefixtures("clean_tables")
def test_hubspot_deals_csv_export_over_http(client, job_waiter, retrieve):
    # Dotted headers (properties.amount) are unflattened into the CRM v3 object shape.
    job = accepted_job(client, job_waiter, raw("hubspot_deals_export.csv"), "text/csv",
                       "source=hubspot&data_type=crm_deals", 2)
    assert stage_counts(job) == all_kept(2)

    rows = stored(retrieve, "crm_deals", lambda r: r["deal_id"], source="hubspot")
    assert sorted(rows) == ["2001", "2002"]
    assert_record(rows["2001"], row(
        "crm_deals", source="hubspot", deal_id="2001", deal_name="Initech - Seats",
        stage="closedwon", pipeline="default", amount=2400.5, currency="USD",
        close_date="2025-03-01", created_at=Instant("2025-02-01T09:00:00+00:00"),
        is_won=True, won=True, days_to_close=28,
        extra={"hs_object_id": "2001"},
    ))
    assert_record(rows["2002"], row(
        "crm_deals", source="hubspot", deal_id="2002", deal_name="Hooli, Trial",
        stage="qualifiedtobuy", pipeline="default", amount=None, currency=None,
        close_date=None, created_at=Instant("2025-02-15T12:00:00+00:00"),
        is_won=False, won=False, days_to_close=None,
        extra={"hs_object_id": "2002"},
    ))
    check_lineage(rows, job)


@pytest.mark.usefixtures("clean_tables")
def test_tiktok_native_rows_as_ndjson_over_http(client, job_waiter, retrieve):
    rows_in = load("tiktok_ads_report.json")["data"]["list"]
    body = b"".join(json.dumps(item).encode() + b"\n" for item in rows_in)
    job = accepted_job(client, job_waiter, body, "application/x-ndjson",
                       "source=tiktok_ads&data_type=campaign_performance", 2)
    assert stage_counts(job) == all_kept(2)

    rows = stored(retrieve, "campaign_performance", lambda r: r["campaign_id"],
                  source="tiktok_ads")
    expected = tiktok_report_expected(None)  # a file takes no ingestion options
    assert sorted(rows) == sorted(expected)
    for campaign_id, record in rows.items():
        assert_record(record, expected[campaign_id])


def assert_422(response, *fragments: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    assert response.status_code == 422, response.get_json()
    body = response.get_json()
    assert body["success"] is False
    error = body["error"]
    assert error["code"] == "invalid_request"
    for fragment in fragments:
        assert fragment in error["message"], error
    return error


@pytest.mark.usefixtures("clean_tables")
def test_a_malformed_ndjson_line_is_422_naming_the_line(client, retrieve):
    body = (b'{"campaign_id": "nd-1", "spend": 1}\n'
            b'{"campaign_id": "nd-2", "spend": 2}\n'
            b'{"campaign_id": "nd-3", "spend": \n'
            b'{"campaign_id": "nd-4", "spend": 4}\n')
    error = assert_422(post_file(client, body, "application/x-ndjson",
                                 "source=generic&data_type=campaign_performance"),
                       "line 3")
    assert error["details"] == {"line": 3, "format": "ndjson"}
    # The upload is refused whole: the lines before the bad one are not stored either.
    found = retrieve({"data_type": "campaign_performance",
                      "filters": {"campaign_id": ["nd-1", "nd-2", "nd-4"]}})
    assert found["total_count"] == 0


def test_a_csv_row_wider_than_its_header_is_422_naming_the_line(client):
    body = (b"campaign_id,spend,impressions\n"
            b"csv-1,1.5,100\n"
            b"csv-2,2.5,200,7\n")
    error = assert_422(post_file(client, body, "text/csv",
                                 "source=generic&data_type=campaign_performance"),
                       "line 3", "4 fields", "header has 3")
    assert error["details"] == {"line": 3, "format": "csv"}


def test_an_ndjson_line_that_is_not_an_object_is_422_naming_the_line(client):
    body = b'{"campaign_id": "nd-5"}\n[1, 2]\n'
    error = assert_422(post_file(client, body, "application/x-ndjson",
                                 "source=generic&data_type=campaign_performance"),
                       "line 2", "object")
    assert error["details"]["line"] == 2


@pytest.mark.parametrize("content_type,name", [("text/csv", "google_ads_export.csv"),
                                               ("application/x-ndjson", "campaigns.ndjson")])
def test_a_file_without_data_type_is_422(client, content_type, name):
    error = assert_422(post_file(client, raw(name), content_type, "source=google_ads"),
                       "data_type")
    assert error["details"]["field"] == "data_type"
    assert "campaign_performance" in error["details"]["allowed"]


def test_a_file_of_an_unknown_data_type_is_422(client):
    error = assert_422(post_file(client, raw("google_ads_export.csv"), "text/csv",
                                 "source=google_ads&data_type=clicks"),
                       "unknown data type 'clicks'")
    assert error["details"]["field"] == "data_type"


def test_a_file_from_an_unknown_source_is_422_listing_the_known_ones(client):
    error = assert_422(post_file(client, raw("google_ads_export.csv"), "text/csv",
                                 "source=bing_ads&data_type=campaign_performance"),
                       "'bing_ads'", f"known: {KNOWN_SOURCES}")
    assert error["details"] == {"field": "source"}


def test_a_json_body_from_an_unknown_source_is_422_listing_the_known_ones(client):
    response = client.post(INGEST, json={"source": "bing_ads",
                                         "data_type": "campaign_performance",
                                         "data": {"records": [{"campaign_id": "u-1"}]}})
    error = assert_422(response, "'bing_ads'", f"known: {KNOWN_SOURCES}")
    assert error["details"] == {"field": "source"}


def test_a_hubspot_file_of_campaign_performance_is_422_saying_what_hubspot_can(client):
    body = b'{"id": "h-1", "properties": {"email": "h1@example.com"}}\n'
    error = assert_422(post_file(client, body, "application/x-ndjson",
                                 "source=hubspot&data_type=campaign_performance"),
                       "'hubspot'", "'campaign_performance'", "crm_contacts, crm_deals")
    assert error["details"] == {"field": "data_type", "allowed": ["crm_contacts", "crm_deals"]}


def test_a_hubspot_json_body_of_campaign_performance_is_422_saying_what_hubspot_can(client):
    response = client.post(INGEST, json={"source": "hubspot",
                                         "data_type": "campaign_performance",
                                         "data": load("hubspot_deals.json")})
    error = assert_422(response, "'hubspot'", "'campaign_performance'",
                       "crm_contacts, crm_deals")
    assert error["details"] == {"field": "data_type", "allowed": ["crm_contacts", "crm_deals"]}


@pytest.mark.parametrize("source,data_type,shape", [
    ("meta_ads", "campaign_performance", 'the Insights response {"data": [...]'),
    ("google_ads", "campaign_performance", "a searchStream response"),
    ("tiktok_ads", "campaign_performance", 'the report response {"code": 0'),
    ("linkedin_ads", "campaign_performance", 'the adAnalytics response {"elements": [...]}'),
    ("hubspot", "crm_contacts", 'a CRM v3 objects response {"results": [...]}'),
    ("salesforce", "crm_deals", 'a query result {"totalSize": N'),
    ("ga4", "web_analytics", "a runReport response"),
])
def test_data_in_no_shape_of_the_platform_is_422_saying_which_shapes(
        client, source, data_type, shape):
    response = client.post(INGEST, json={"source": source, "data_type": data_type,
                                         "data": {"items": [{"campaign_id": "sh-1"}]}})
    error = assert_422(response, f"{source}: data must be", '{"records": [...]}', shape)
    assert error["details"] == {"field": "data"}


def test_a_tiktok_error_response_is_422_with_its_code_and_message(client):
    response = client.post(INGEST, json={
        "source": "tiktok_ads", "data_type": "campaign_performance",
        "data": {"code": 40105, "message": "Access token is incorrect or has been revoked.",
                 "request_id": "2025111301", "data": {}},
    })
    error = assert_422(response, "code 40105", "Access token is incorrect")
    assert error["details"] == {"field": "data"}


# --------------------------------------------------------------------------- per-record refusals


GOOD_GOOGLE = {"customer": {"id": "rj-acct"}, "campaign": {"id": "rj-g-1"},
               "segments": {"date": "2025-01-15"},
               "metrics": {"impressions": "10", "clicks": "1", "costMicros": "1000000"}}
GOOD_META = {"campaign_id": "rj-m-1", "date_start": "2025-03-14", "spend": "1.5",
             "actions": [{"action_type": "omni_purchase", "value": "1"}]}
GOOD_TIKTOK = {"dimensions": {"campaign_id": "rj-t-1", "stat_time_day": "2025-11-12 00:00:00"},
               "metrics": {"spend": "1.00", "impressions": "10", "clicks": "1"}}
GOOD_LINKEDIN = {"dateRange": {"start": {"year": 2025, "month": 1, "day": 15}},
                 "pivotValues": ["urn:li:sponsoredCampaign:rj-l-1"], "impressions": 10,
                 "clicks": 1, "costInLocalCurrency": "1.0"}

# (source, data_type, good row, bad row, stage that refuses it, rule, field, message fragment)
REFUSALS = [
    pytest.param("google_ads", "campaign_performance", GOOD_GOOGLE,
                 {**GOOD_GOOGLE, "campaign": {"name": "no id"}},
                 "validate", "required", "campaign_id", "campaign_id",
                 id="google_ads-no-campaign-id"),
    pytest.param("google_ads", "campaign_performance", GOOD_GOOGLE,
                 {**GOOD_GOOGLE, "campaign": {"id": "rj-g-2"},
                  "metrics": {"impressions": "10", "costMicros": "12.3.4"}},
                 "ingest", "source_format", None, "metrics.costMicros",
                 id="google_ads-bad-micros"),
    pytest.param("meta_ads", "campaign_performance", GOOD_META,
                 {**GOOD_META, "campaign_id": "rj-m-2", "actions": [{"value": "3"}]},
                 "ingest", "source_format", None, "actions",
                 id="meta_ads-action-without-type"),
    pytest.param("meta_ads", "campaign_performance", GOOD_META,
                 {**GOOD_META, "campaign_id": "rj-m-3",
                  "actions": [{"action_type": "omni_purchase", "value": "many"}]},
                 "ingest", "source_format", None, "actions: omni_purchase",
                 id="meta_ads-action-value-not-a-number"),
    pytest.param("meta_ads", "campaign_performance", GOOD_META,
                 {**GOOD_META, "campaign_id": "rj-m-4", "spend": "5,339.50"},
                 "validate", "type", "spend", "number",
                 id="meta_ads-spend-not-a-number"),
    pytest.param("tiktok_ads", "campaign_performance", GOOD_TIKTOK,
                 {"dimensions": {"stat_time_day": "2025-11-12 00:00:00"},
                  "metrics": {"spend": "2.00"}},
                 "validate", "required", "campaign_id", "campaign_id",
                 id="tiktok_ads-no-campaign-id"),
    pytest.param("linkedin_ads", "campaign_performance", GOOD_LINKEDIN,
                 {**GOOD_LINKEDIN, "pivotValues": ["urn:li:sponsoredCampaign:rj-l-2"],
                  "dateRange": {"end": {"year": 2025, "month": 1, "day": 15}}},
                 "ingest", "source_format", None, "dateRange.start",
                 id="linkedin_ads-no-start-date"),
    pytest.param("linkedin_ads", "campaign_performance", GOOD_LINKEDIN,
                 {**GOOD_LINKEDIN, "pivotValues": ["rj-l-3"]},
                 "ingest", "source_format", None, "pivotValues",
                 id="linkedin_ads-pivot-not-a-urn"),
    pytest.param("linkedin_ads", "campaign_performance", GOOD_LINKEDIN,
                 {**GOOD_LINKEDIN, "pivotValues": ["urn:li:organization:1337"]},
                 "validate", "required", "campaign_id", "campaign_id",
                 id="linkedin_ads-no-campaign-pivot"),
    pytest.param("hubspot", "crm_contacts", {"id": "rj-h-1", "properties": {"email": "a@x.io"}},
                 {"properties": {"email": "b@x.io"}, "archived": False},
                 "validate", "required", "contact_id", "contact_id",
                 id="hubspot-contact-without-id"),
    pytest.param("hubspot", "crm_deals", {"id": "rj-h-2", "properties": {"amount": "10.00"}},
                 {"id": "rj-h-3", "properties": {"amount": "1,500.00"}},
                 "validate", "type", "amount", "number",
                 id="hubspot-deal-amount-not-a-number"),
    pytest.param("salesforce", "crm_deals",
                 {"attributes": {"type": "Opportunity"}, "Id": "rj-s-1", "Amount": 10},
                 {"attributes": {"type": "Lead"}, "Id": "rj-s-2", "Status": "Open"},
                 "ingest", "source_format", None, "Lead",
                 id="salesforce-lead-sent-as-deal"),
    pytest.param("salesforce", "crm_deals",
                 {"attributes": {"type": "Opportunity"}, "Id": "rj-s-3", "Amount": 10},
                 {"attributes": {"type": "Opportunity"}, "Id": "rj-s-4", "Probability": "high"},
                 "ingest", "source_format", None, "Probability",
                 id="salesforce-probability-not-a-number"),
    pytest.param("ga4", "web_analytics",
                 {"date": "20250115", "sessionSource": "rj-ga-1", "sessions": "1"},
                 {"date": "2025011", "sessionSource": "rj-ga-2", "sessions": "1"},
                 "validate", "type", "date", "date",
                 id="ga4-bad-date"),
]


@pytest.mark.parametrize("source,data_type,good,bad,stage,rule,field,fragment", REFUSALS)
def test_a_native_row_the_adapter_cannot_use_is_refused_alone(
        client, run_job, retrieve, source, data_type, good, bad, stage, rule, field, fragment):
    job = ingest_ok(run_job, source, data_type, {"records": [good, bad]})
    assert job["result"]["records_count"] == 1
    counts = stage_counts(job)
    assert counts["store"] == (1, 1)
    assert counts[stage] == (2, 1)

    refusals = rejected(client, job["job_id"])
    assert len(refusals) == 1, refusals
    [refused] = refusals
    assert refused["stage"] == stage and refused["record_index"] == 1
    if stage == "ingest":
        assert refused["record"] == bad  # the native row, as it came
    reasons = [(r["rule"], r["field"]) for r in refused["reasons"]]
    assert (rule, field) in reasons, refused["reasons"]
    message = next(r["message"] for r in refused["reasons"] if (r["rule"], r["field"])
                   == (rule, field))
    assert fragment in message, message
    if stage == "ingest":
        assert message.startswith(f"{source}: ")

    found = retrieve({"data_type": data_type, "filters": {"job_id": job["job_id"]}})
    assert found["total_count"] == 1
