"""group_by + metrics: sums, and ratios recomputed from the sums."""

from __future__ import annotations

import pytest

from tests.test_retrieve import query
from tests.test_storage_upsert import store_rows


def _row(campaign: str, day: str, spend: str, impressions: int, clicks: int,
         **more: object) -> dict:
    return {"source": "meta_ads", "account_id": "acc", "campaign_id": campaign, "date": day,
            "spend": spend, "impressions": impressions, "clicks": clicks, **more}


@pytest.fixture
def facts(engine, clean_tables):  # type: ignore[no-untyped-def]
    store_rows(engine, [
        _row("c1", "2023-10-01", "10", 1000, 10, conversions=1, conversion_value="30"),
        _row("c1", "2023-10-02", "30", 3000, 90, conversions=3, conversion_value="30"),
        _row("c2", "2023-10-01", "5", 0, 0),
        _row("c2", "2023-11-01", "7", 100, 1),
        _row("c3", "2023-10-05", "1", 10, 10),
    ])


@pytest.mark.usefixtures("facts")
def test_group_by_campaign_sums_and_recomputes_ratios(client):
    result = query(client, {"group_by": ["campaign_id"],
                            "metrics": ["spend", "clicks", "impressions", "ctr", "cpm", "roas"],
                            "filters": {"date_range": {"start": "2023-10-01",
                                                       "end": "2023-10-31"}}})
    assert result["total_count"] == 3 and result["records_count"] == 3
    assert result["next_cursor"] is None and result["next_offset"] is None
    by_campaign = {r["campaign_id"]: r for r in result["records"]}
    c1 = by_campaign["c1"]
    assert (c1["spend"], c1["clicks"], c1["impressions"]) == (40.0, 100, 4000)
    assert isinstance(c1["clicks"], int)
    # 100 / 4000, not the mean of the rows' ctr (0.01 and 0.03)
    assert c1["ctr"] == 0.025 and c1["cpm"] == 10.0 and c1["roas"] == 1.5
    c2 = by_campaign["c2"]  # October only: no impressions, so no ctr and no cpm
    assert c2["impressions"] == 0 and c2["ctr"] is None and c2["cpm"] is None
    assert c2["roas"] is None  # no conversion value at all
    assert list(c1) == ["campaign_id", "spend", "clicks", "impressions", "ctr", "cpm", "roas"]


@pytest.mark.usefixtures("facts")
def test_sort_and_pages_of_groups(client):
    body = {"group_by": ["campaign_id"], "metrics": ["spend", "ctr"], "sort": ["-spend"],
            "limit": 2}
    first = query(client, body)
    assert [r["campaign_id"] for r in first["records"]] == ["c1", "c2"]
    assert first["total_count"] == 3 and first["next_offset"] == 2
    second = query(client, {**body, "offset": 2})
    assert [r["campaign_id"] for r in second["records"]] == ["c3"]
    assert second["total_count"] == 3 and second["next_offset"] is None
    beyond = query(client, {**body, "offset": 10})
    assert beyond["records"] == [] and beyond["total_count"] == 3
    by_ratio = query(client, {"group_by": ["campaign_id"], "metrics": ["ctr"],
                              "sort": ["-ctr"]})
    assert [r["campaign_id"] for r in by_ratio["records"]] == ["c3", "c1", "c2"]
    october = query(client, {"group_by": ["campaign_id"], "metrics": ["ctr"], "sort": ["-ctr"],
                             "filters": {"date": {"lt": "2023-11-01"}}})
    # c2 has no ctr in October; NULL sorts as the largest value, first when descending
    assert [r["campaign_id"] for r in october["records"]] == ["c2", "c3", "c1"]


@pytest.mark.usefixtures("facts")
def test_several_group_columns_and_totals_without_groups(client):
    monthly = query(client, {"group_by": ["campaign_id", "date"], "metrics": ["clicks"],
                             "filters": {"campaign_id": "c2"}, "sort": ["date"]})
    assert [(r["date"], r["clicks"]) for r in monthly["records"]] == [
        ("2023-10-01", 0), ("2023-11-01", 1)]
    totals = query(client, {"metrics": ["spend", "clicks", "impressions", "ctr"]})
    assert totals["records"] == [{"spend": 53.0, "clicks": 111, "impressions": 4110,
                                  "ctr": 111 / 4110}]
    groups_only = query(client, {"group_by": ["campaign_id"]})
    assert groups_only["records"] == [{"campaign_id": c} for c in ("c1", "c2", "c3")]


@pytest.mark.parametrize("body, field", [
    ({"group_by": ["campaign_id"], "metrics": ["colour"]}, "colour"),
    ({"group_by": ["colour"], "metrics": ["spend"]}, "colour"),
    ({"group_by": ["campaign_id"], "metrics": ["campaign_name"]}, "campaign_name"),
    ({"group_by": ["campaign_id"], "metrics": ["spend"], "sort": ["date"]}, "date"),
])
def test_unknown_metric_group_or_sort_is_422_listing_the_allowed(client, body, field):
    error = query(client, body, 422)
    assert error["details"]["field"] == field
    assert error["details"]["allowed"]


def test_fields_do_not_combine_with_group_by(client):
    error = query(client, {"group_by": ["campaign_id"], "fields": ["spend"]}, 422)
    assert error["details"]["field"] == "fields"
