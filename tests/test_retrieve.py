"""POST /retrieve: filters, date_range, sort, fields, limit/offset, total_count, bad input."""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_storage_upsert import store_rows

URL = "/api/v1/data_pipeline/retrieve"


def campaign_rows() -> list[dict[str, Any]]:
    """Two accounts, three campaigns, October and November 2023, plus one undated seed row."""
    rows = []
    for account, campaigns in (("a1", ("c1", "c2")), ("a2", ("c3",))):
        for campaign in campaigns:
            for day in [f"2023-10-{d:02d}" for d in range(1, 11)] + ["2023-11-01", "2023-11-02"]:
                number = int(campaign[1]) * 100 + int(day[-2:])
                rows.append({
                    "source": "meta_ads" if account == "a1" else "google_ads",
                    "account_id": account, "campaign_id": campaign, "date": day,
                    "campaign_name": f"name {campaign}", "spend": f"{number / 10:.1f}",
                    "impressions": 1000, "clicks": number % 7, "conversions": 1,
                })
    rows.append({"source": "meta_ads", "campaign_id": "123", "spend": 100.0,
                 "impressions": 1000, "clicks": 50, "conversions": 5})
    return rows


@pytest.fixture
def campaigns(engine, clean_tables):  # type: ignore[no-untyped-def]
    """campaign_rows() stored."""
    rows = campaign_rows()
    store_rows(engine, rows)
    return rows


def query(client, body: dict[str, Any], status: int = 200) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = client.post(URL, json={"data_type": "campaign_performance", **body})
    assert response.status_code == status, response.get_json()
    payload = response.get_json()
    return payload["result"] if status == 200 else payload["error"]


@pytest.mark.usefixtures("campaigns")
def test_equality_list_and_operator_filters(client):
    one = query(client, {"filters": {"campaign_id": "c1", "date": "2023-10-03"}})
    assert one["total_count"] == 1 and one["records"][0]["spend"] == 10.3

    listed = query(client, {"filters": {"campaign_id": ["c1", "c3"]}})
    assert listed["total_count"] == 24
    assert {r["campaign_id"] for r in listed["records"]} == {"c1", "c3"}

    ranged = query(client, {"filters": {"spend": {"gte": 20.5, "lt": 21}}, "sort": ["spend"]})
    assert [r["spend"] for r in ranged["records"]] == [20.5, 20.6, 20.7, 20.8, 20.9]

    others = query(client, {"filters": {"account_id": {"ne": "a1"}}})
    assert {r["account_id"] for r in others["records"]} == {"a2"}  # NULL is not "not a1"
    undated = query(client, {"filters": {"date": None}})
    assert [r["campaign_id"] for r in undated["records"]] == ["123"]
    numbers_as_text = query(client, {"filters": {"campaign_id": 123}})
    assert numbers_as_text["total_count"] == 1


@pytest.mark.usefixtures("campaigns")
def test_date_range_and_an_account_month(client):
    page = query(client, {"filters": {"account_id": "a1", "date_range": {
        "start": "2023-10-01", "end": "2023-10-31"}}, "sort": ["-date", "campaign_id"],
        "limit": 3})
    assert [(r["date"], r["campaign_id"]) for r in page["records"]] == [
        ("2023-10-10", "c1"), ("2023-10-10", "c2"), ("2023-10-09", "c1")]
    assert page["total_count"] == 20 and page["next_offset"] == 3


@pytest.mark.usefixtures("campaigns")
def test_fields_projection_and_offset_pages(client):
    pages, offset = [], 0
    while offset is not None:
        page = query(client, {"filters": {"campaign_id": "c2"}, "sort": ["date"],
                              "fields": ["date", "spend"], "limit": 5, "offset": offset})
        assert all(set(r) == {"date", "spend"} for r in page["records"])
        assert page["total_count"] == 12 and page["offset"] == offset
        pages.append(page)
        offset = page["next_offset"]
    assert [p["records_count"] for p in pages] == [5, 5, 2]
    dates = [r["date"] for p in pages for r in p["records"]]
    assert dates == sorted(dates) and len(set(dates)) == 12


@pytest.mark.usefixtures("campaigns")
def test_the_response_keeps_its_shape(client):
    response = client.post(URL, json={"data_type": "campaign_performance", "limit": 2})
    body = response.get_json()
    assert body["success"] is True and body["data_type"] == "campaign_performance"
    assert set(body["result"]) == {"retrieved_at", "records", "records_count", "total_count",
                                   "limit", "offset", "next_offset", "next_cursor", "status"}
    assert body["result"]["status"] == "success" and body["result"]["limit"] == 2
    assert body["result"]["next_cursor"] and body["result"]["next_offset"] == 2
    default = query(client, {})
    assert default["limit"] == 100 and default["records_count"] == 37
    assert default["next_offset"] is None and default["next_cursor"] is None


@pytest.mark.usefixtures("campaigns")
def test_total_count_exact_estimate_or_none(client):
    body = {"filters": {"account_id": "a1"}, "limit": 5}
    assert query(client, body)["total_count"] == 24
    estimate = query(client, {**body, "total_count": "estimate"})["total_count"]
    assert isinstance(estimate, int) and estimate >= 1
    skipped = query(client, {**body, "total_count": "none"})
    assert skipped["total_count"] is None and skipped["next_offset"] == 5
    # A page that is the last one knows its total without counting, whatever was asked.
    assert query(client, {**body, "limit": 100, "total_count": "estimate"})["total_count"] == 24


def test_unknown_filter_sort_and_field_are_422_listing_the_allowed(client):
    for body, part in (({"filters": {"colour": 1}}, "colour"),
                       ({"sort": ["-colour"]}, "-colour"),
                       ({"fields": ["spend", "colour"]}, "colour")):
        error = query(client, body, 422)
        assert error["details"]["field"] == part
        assert "campaign_id" in error["details"]["allowed"] and "spend" in error["details"][
            "allowed"]


@pytest.mark.parametrize("filters", [
    {"impressions": "many"}, {"spend": {"gte": "ten"}}, {"date": "yesterday"},
    {"date_range": {"start": "2023-13-45"}}, {"campaign_id": {"in": "c1"}},
    {"campaign_id": {"like": "c%"}}, {"campaign_id": [["c1"]]}, {"clicks": 1.5},
    {"spend": {"gt": True}}, {"spend": "1e999999"}, {"impressions": "1e30"},
    {"ingested_at": 10**17}, {"campaign_id": "a\u0000b"}, {"date_range": "2023-10"},
    {"spend": {"gte": None}}, {"date": {"lt": None, "gt": "2023-10-01"}},
])
def test_a_value_of_the_wrong_type_is_422(client, filters):
    error = query(client, {"filters": filters}, 422)
    assert error["code"] == "invalid_request" and error["details"]


@pytest.mark.parametrize("body, field", [
    ({"limit": 1001}, "limit"), ({"limit": 0}, "limit"), ({"limit": "10"}, "limit"),
    ({"offset": -1}, "offset"), ({"total_count": "roughly"}, "total_count"),
    ({"sort": "date"}, "sort"), ({"fields": "spend"}, "fields"), ({"cursor": 5}, "cursor"),
    ({"group_by": "campaign_id"}, "group_by"), ({"page": 2}, "page"),
])
def test_malformed_parameters_are_422_naming_them(client, body, field):
    error = query(client, body, 422)
    assert field in error["details"]


def test_sorting_twice_by_one_field_is_422(client):
    error = query(client, {"sort": ["date", "-date"]}, 422)
    assert error["details"]["field"] == "sort"
