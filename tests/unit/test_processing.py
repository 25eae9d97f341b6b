"""The process stage core: types, derived metrics, dedup and its result (no database)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from tasks.datatypes import CAMPAIGN_PERFORMANCE, CRM_DEALS, WEB_ANALYTICS
from tasks.processing.core import process
from tasks.processing.metrics import RATIO_PRECISION, deal_won

SEED = {"campaign_id": "123", "spend": 100.0, "impressions": 1000, "clicks": 50, "conversions": 5}
FULL = {
    "source": "meta_ads", "account_id": "act_1", "campaign_id": "123",
    "campaign_name": "  Spring sale ", "date": "2025-01-15", "currency": "USD",
    "spend": "100.0", "impressions": 1000, "clicks": 50, "reach": 400,
    "conversions": "5", "conversion_value": "250",
}
RATIOS = ("ctr", "cpc", "cpm", "cpa", "conversion_rate", "roas", "frequency")


def one(record: dict, data_type=CAMPAIGN_PERFORMANCE, options=None) -> dict:
    output = process([record], data_type, options)
    assert not output.rejected, output.rejected
    return output.records[0]


def test_each_ratio_is_an_exact_decimal_from_raw_values():
    record = one(FULL)
    assert record["ctr"] == Decimal("0.05") and str(record["ctr"]) == "0.05"
    assert record["cpc"] == Decimal(2)
    assert record["cpm"] == Decimal(100)
    assert record["cpa"] == Decimal(20)
    assert record["conversion_rate"] == Decimal("0.1")
    assert record["roas"] == Decimal("2.5")
    assert record["frequency"] == Decimal("2.5")
    assert all(type(record[name]) is Decimal for name in RATIOS)


def test_ratios_never_print_in_exponent_form():
    record = one(FULL)
    assert [str(record[n]) for n in ("cpc", "cpm", "cpa")] == ["2.0", "100.0", "20.0"]


def test_seed_record_metrics():
    record = one(SEED)
    assert (record["ctr"], record["cpc"], record["cpm"], record["cpa"]) == (
        Decimal("0.05"), 2, 100, 20)
    assert record["conversion_rate"] == Decimal("0.1")
    assert record["roas"] is None  # no conversion_value
    assert record["frequency"] is None  # reach unknown


@pytest.mark.parametrize(("zeroed", "nulls"), [
    ("impressions", {"ctr", "cpm"}),
    ("clicks", {"cpc", "conversion_rate"}),
    ("conversions", {"cpa"}),
    ("spend", {"roas"}),
    ("reach", {"frequency"}),
])
def test_a_zero_denominator_gives_null_never_zero_or_an_error(zeroed, nulls):
    for zero in (0, "0", "0.00"):
        record = one({**FULL, zeroed: zero})
        assert {name for name in RATIOS if record[name] is None} == nulls, (zeroed, zero)


def test_a_missing_operand_gives_null():
    record = one({"campaign_id": "1", "clicks": 5})
    assert all(record[name] is None for name in RATIOS)


def test_non_terminating_ratios_keep_the_documented_precision():
    assert RATIO_PRECISION == 20
    record = one({**FULL, "clicks": 1, "impressions": 3, "spend": "100"})
    assert record["ctr"] == Decimal("0.33333333333333333333")
    assert record["cpm"] == Decimal("33333.333333333333333")
    assert one({**FULL, "clicks": 3, "spend": "100"})["cpc"] == Decimal("33.333333333333333333")
    assert one({**FULL, "clicks": 3, "spend": "2"})["cpc"] == Decimal("0.66666666666666666667")


def test_platform_ratios_are_not_trusted_and_stay_in_extra():
    record = one({**FULL, "ctr": "2.00", "cpm": 5.5, "frequency": "1.2"})
    assert record["ctr"] == Decimal("0.05") and record["cpm"] == 100
    assert record["extra"] == {"ctr": "2.00", "cpm": 5.5, "frequency": "1.2"}


def test_without_metrics_platform_ratios_stay_in_extra_and_columns_are_unset():
    record = one({**FULL, "ctr": "2.00"}, options={"calculate_metrics": False})
    assert "ctr" not in record and "cpc" not in record
    assert record["extra"] == {"ctr": "2.00"}


def test_types_are_normalised():
    record = one({**FULL, "date": "20250115", "impressions": "1000", "clicks": 50.0,
                  "account_id": 12345, "campaign_name": "  Spring sale  "})
    assert record["date"] == date(2025, 1, 15)
    assert record["impressions"] == 1000 and type(record["impressions"]) is int
    assert record["clicks"] == 50 and type(record["clicks"]) is int
    assert record["account_id"] == "12345"
    assert record["campaign_name"] == "Spring sale"
    assert one({**FULL, "date": "2025-01-15T23:10:00Z"})["date"] == date(2025, 1, 15)


def test_money_stays_exact():
    a = one({**FULL, "spend": 0.1})
    b = one({**FULL, "spend": "0.2", "campaign_id": "2"})
    assert a["spend"] == Decimal("0.1") and b["spend"] == Decimal("0.2")
    assert a["spend"] + b["spend"] == Decimal("0.3")
    assert one({**FULL, "spend": "130.319306"})["spend"] == Decimal("130.319306")


def test_dedup_on_the_natural_key_last_wins_in_the_place_of_the_first():
    rows = [
        {**FULL, "spend": "1"},
        {**FULL, "campaign_id": "9"},
        {**FULL, "spend": "2"},
        {**FULL, "spend": "3", "date": "2025-01-16"},
        {**FULL, "spend": "4"},
    ]
    output = process(rows, CAMPAIGN_PERFORMANCE)
    assert [(r["campaign_id"], r["date"].day, r["spend"]) for r in output.records] == [
        ("123", 15, 4), ("9", 15, 100), ("123", 16, 3)]
    assert output.result["duplicates_removed"] == 2
    assert output.result["records_count"] == 3


def test_dedup_compares_normalised_keys():
    rows = [{**SEED, "campaign_id": 123}, {**SEED, "campaign_id": " 123 ", "spend": 7}]
    output = process(rows, CAMPAIGN_PERFORMANCE)
    assert len(output.records) == 1 and output.records[0]["spend"] == 7
    assert output.result["duplicates_removed"] == 1


def test_result_keeps_the_seed_fields_and_adds_what_was_done():
    output = process([SEED, SEED, {"campaign_id": "x", "spend": "abc"}], CAMPAIGN_PERFORMANCE,
                     {"calculate_metrics": True, "enrich_with_audience_data": True})
    result = output.result
    assert result["processed_at"].endswith("Z")
    assert result["records_count"] == 1
    assert result["status"] == "success"
    assert result["duplicates_removed"] == 1
    assert result["records_refused"] == 1
    assert result["metrics_calculated"] is True
    assert result["metrics"] == list(RATIOS)
    assert result["enriched"] == 0 and result["enrichment_unmatched"] == 1  # no lookups
    assert result["converted"] == 0
    assert list(result)[-1] == "status"
    assert output.records_in == 3


def test_uncoercible_records_are_refused_with_reasons_others_go_on():
    rows = [SEED, {"campaign_id": "2", "impressions": "1.5"}, "not an object"]
    output = process(rows, CAMPAIGN_PERFORMANCE)
    assert len(output.records) == 1
    assert [r.index for r in output.rejected] == [1, 2]
    assert output.rejected[0].record == rows[1]
    assert output.rejected[0].reasons[0]["rule"] == "type"
    assert output.rejected[0].reasons[0]["field"] == "impressions"
    assert output.rejected[1].reasons[0]["rule"] == "object"


def test_empty_batch():
    output = process([], CAMPAIGN_PERFORMANCE)
    assert output.records == [] and output.result["records_count"] == 0


def test_web_analytics_conversion_rate_and_revenue_per_session():
    rows = [
        {"date": "20250115", "session_source": "google", "sessions": "15",
         "conversions": "3", "revenue": "120.50"},
        {"date": "20250116", "session_source": "google", "sessions": 0,
         "conversions": 0, "revenue": "0"},
    ]
    first, second = process(rows, WEB_ANALYTICS).records
    assert first["conversion_rate"] == Decimal("0.2")
    assert first["revenue_per_session"] == Decimal("8.0333333333333333333")
    assert second["conversion_rate"] is None and second["revenue_per_session"] is None


def test_crm_deals_won_and_days_to_close():
    deal = {"source": "hubspot", "deal_id": "1", "amount": "1000",
            "created_at": "2025-01-01T23:30:00Z", "close_date": "2025-01-31"}
    record = one({**deal, "stage": "closedwon"}, CRM_DEALS)
    assert record["won"] is True and record["days_to_close"] == 30
    assert one({**deal, "stage": "Closed Won"}, CRM_DEALS)["won"] is True
    assert one({**deal, "stage": "closedlost"}, CRM_DEALS)["won"] is False
    assert one({**deal, "stage": "appointmentscheduled"}, CRM_DEALS)["won"] is False
    assert one({**deal, "is_won": "true", "stage": "x"}, CRM_DEALS)["won"] is True
    assert one({**deal, "is_won": False, "stage": "closedwon"}, CRM_DEALS)["won"] is False
    assert one({"deal_id": "2"}, CRM_DEALS)["won"] is None
    assert one({"deal_id": "2"}, CRM_DEALS)["days_to_close"] is None
    assert one({**deal, "created_at": 1735776000000}, CRM_DEALS)["days_to_close"] == 29


def test_deal_won_on_plain_values():
    assert deal_won({"is_closed": True}) is None  # closed, but won or lost is not said
    assert deal_won({"is_closed": False}) is False
    assert deal_won({"stage": "Closed-Lost"}) is False
    created = datetime(2025, 3, 1, tzinfo=UTC)
    record = one({"deal_id": "3", "created_at": created, "close_date": date(2025, 2, 27)},
                 CRM_DEALS)
    assert record["days_to_close"] == -2  # the data says so: shown, not hidden


def test_unknown_fields_are_kept_in_extra():
    record = one({**SEED, "objective": "CONVERSIONS", "extra": {"note": "x"}})
    assert record["extra"] == {"note": "x", "objective": "CONVERSIONS"}


def test_in_place_gives_the_same_records_and_leaves_refused_ones_alone():
    rows = [FULL, {**FULL, "campaign_id": "2", "objective": "x", "ctr": "9"},
            {**FULL, "campaign_id": "3", "spend": "abc"}, {**FULL, "spend": "7"}]
    copies = [dict(r) for r in rows]
    expected = process(copies, CAMPAIGN_PERFORMANCE)
    assert copies == rows  # the default leaves the input alone
    got = process(rows, CAMPAIGN_PERFORMANCE, in_place=True)
    assert got.records == expected.records
    assert got.records[1] is rows[1]  # converted in its own dict
    assert rows[2] == copies[2] and got.rejected[0].record is rows[2]
    assert got.result["duplicates_removed"] == expected.result["duplicates_removed"] == 1
