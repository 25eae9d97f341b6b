"""Each rule kind on small batches, with the exact issues it reports."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from tasks.datatypes import CAMPAIGN_PERFORMANCE, CRM_DEALS, DataType
from tasks.stage import StageOutput
from tasks.validation.core import validate

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
BASE = {"campaign_id": "c1", "spend": "10", "impressions": 100, "clicks": 10,
        "conversions": 1, "date": "2025-05-30"}
SEED_RULES = {
    "required_fields": ["campaign_id", "spend", "impressions", "clicks", "conversions"],
    "numeric_fields": ["spend", "impressions", "clicks", "conversions"],
}


def run(records: list[Any], rules: dict[str, Any] | None = None,
        data_type: DataType = CAMPAIGN_PERFORMANCE) -> StageOutput:
    return validate(records, data_type, rules, now=NOW)


def row(**changes: Any) -> dict[str, Any]:
    record = {**BASE, **changes}
    return {k: v for k, v in record.items() if v is not ...}


def issues(out: StageOutput) -> list[tuple[int, list[tuple[Any, ...]]]]:
    return [
        (r.index, [(x["rule"], x["field"], x["value"], x["message"]) for x in r.reasons])
        for r in out.rejected
    ]


def entry(out: StageOutput, rule: str, **args: Any) -> dict[str, Any]:
    found = [r for r in out.result["rules"]
             if r["rule"] == rule and all(r.get(k) == v for k, v in args.items())]
    assert len(found) == 1, found
    return found[0]


def test_the_seed_example_passes_with_the_seed_result_fields() -> None:
    seed = {"campaign_id": "123", "spend": 100.0, "impressions": 1000, "clicks": 50,
            "conversions": 5}
    out = run([seed], SEED_RULES)
    result = out.result
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", result["validated_at"])
    assert result["validation_passed"] is True
    assert result["issues_found"] == 0
    assert result["status"] == "success"
    assert (result["records_count"], result["valid_count"], result["invalid_count"]) == (1, 1, 0)
    assert result["on_invalid"] == "quarantine"
    assert out.records == [{"campaign_id": "123", "spend": Decimal("100.0"),
                            "impressions": 1000, "clicks": 50, "conversions": Decimal(5)}]
    assert out.rejected == [] and out.records_in == 1


def test_required_fields_refuse_missing_null_and_blank_values() -> None:
    out = run([row(), row(spend=...), row(spend=None), row(campaign_id="  ")], SEED_RULES)
    assert issues(out) == [
        (1, [("required", "spend", None, "spend is required")]),
        (2, [("required", "spend", None, "spend is required")]),
        (3, [("required", "campaign_id", "  ", "campaign_id is required")]),
    ]
    assert entry(out, "required", field="spend")["unexpected_index_list"] == [1, 2]
    assert out.result["validation_passed"] is False


def test_numeric_fields_report_values_that_are_not_numbers_once() -> None:
    rules = {"numeric_fields": ["spend", "impressions", "score"]}
    records = [row(), row(spend="abc"), row(impressions="15.5"),
               row(extra={"score": "high"}), row(extra={"score": "7.5"})]
    out = run(records, rules)
    assert issues(out) == [
        (1, [("type", "spend", "abc", "expected a number, got 'abc'")]),
        (2, [("type", "impressions", "15.5", "expected an integer, got '15.5'")]),
        (3, [("type", "score", "high", "score: expected a number, got 'high'")]),
    ]
    assert entry(out, "type", field="spend")["type"] == "number"
    assert entry(out, "type", field="impressions")["type"] == "integer"  # the column's own
    assert entry(out, "type", field="score", type="number")["unexpected_count"] == 1


def test_every_declared_column_must_convert_by_default() -> None:
    out = run([row(date="yesterday"), row(clicks=True)])
    assert issues(out) == [
        (0, [("type", "date", "yesterday", "expected a date (YYYY-MM-DD), got 'yesterday'")]),
        (1, [("type", "clicks", True, "expected an integer, got a boolean")]),
    ]


def test_required_fields_in_extra_refuse_blank_values_too() -> None:
    out = run([row(extra={"utm": "x"}), row(extra={"utm": "  "}), row()],
              {"required_fields": ["utm"]})
    assert issues(out) == [(1, [("required", "utm", "  ", "utm is required")]),
                           (2, [("required", "utm", None, "utm is required")])]


def test_not_null_allows_a_missing_field_but_not_a_null_one() -> None:
    rules = {"rules": [{"rule": "not_null", "fields": ["campaign_name", "note"]}]}
    records = [row(), row(campaign_name=None), row(campaign_name=""),
               row(extra={"note": None}), row(extra={"note": "ok"})]
    out = run(records, rules)
    assert issues(out) == [
        (1, [("not_null", "campaign_name", None, "campaign_name must not be null")]),
        (2, [("not_null", "campaign_name", "", "campaign_name must not be null")]),
        (3, [("not_null", "note", None, "note must not be null")]),
    ]


def test_forbidden_fields_refuse_a_present_value() -> None:
    rules = {"forbidden_fields": ["email"], "rules": [{"rule": "forbidden", "field": "reach"}]}
    out = run([row(), row(email="a@b.c"), row(email=None), row(reach=0)], rules)
    assert issues(out) == [
        (1, [("forbidden", "email", "a@b.c", "email is not allowed")]),
        (3, [("forbidden", "reach", 0, "reach is not allowed")]),
    ]


def test_type_rules_check_convertibility_to_the_named_type() -> None:
    rules = {"rules": [
        {"rule": "type", "field": "campaign_id", "type": "integer"},
        {"rule": "type", "field": "launched", "type": "date"},
        {"rule": "type", "field": "spend", "type": "integer"},
    ]}
    records = [row(campaign_id="123", extra={"launched": "2025-01-02"}),
               row(campaign_id="c-9", spend="10.5", extra={"launched": "soon"})]
    out = run(records, rules)
    assert issues(out) == [(1, [
        ("type", "campaign_id", "c-9", "campaign_id: expected a number, got 'c-9'"),
        ("type", "launched", "soon", "launched: expected a date (YYYY-MM-DD), got 'soon'"),
        ("type", "spend", Decimal("10.5"), "spend: expected an integer, got Decimal('10.5')"),
    ])]


def test_range_with_bounds_strictness_and_dates() -> None:
    rules = {"rules": [
        {"rule": "range", "field": "spend", "min": 0, "max": 100, "strict_min": True},
        {"rule": "range", "field": "date", "min": "2025-05-01"},
        {"rule": "range", "field": "score", "max": 10},
    ]}
    records = [row(), row(spend="0"), row(spend="150.5"), row(date="2025-04-30"),
               row(extra={"score": "11"}), row(extra={"score": "n/a"})]
    out = run(records, rules)
    assert issues(out) == [
        (1, [("range", "spend", Decimal("0"), "spend must be > 0 and <= 100, got 0")]),
        (2, [("range", "spend", Decimal("150.5"), "spend must be > 0 and <= 100, got 150.5")]),
        (3, [("range", "date", date(2025, 4, 30),
              "date must be >= 2025-05-01, got 2025-04-30")]),
        (4, [("range", "score", "11", "score must be <= 10, got 11")]),
        (5, [("range", "score", "n/a", "score: expected a number, got 'n/a'")]),
    ]
    assert entry(out, "range", field="spend")["partial_unexpected_list"] == ["0", "150.5"]


def test_non_negative_defaults_of_the_data_type() -> None:
    out = run([row(impressions=-1), row(spend="-0.5", conversions=-2)])
    assert issues(out) == [
        (0, [("non_negative", "impressions", -1, "impressions must not be negative, got -1")]),
        (1, [("non_negative", "spend", Decimal("-0.5"), "spend must not be negative, got -0.5"),
             ("non_negative", "conversions", Decimal("-2"),
              "conversions must not be negative, got -2")]),
    ]
    assert entry(out, "non_negative", field="spend")["origin"] == "data_type"


def test_allowed_values_compare_canonical_values() -> None:
    rules = {"rules": [{"rule": "allowed_values", "field": "currency", "values": ["USD", "EUR"]},
                       {"rule": "allowed_values", "field": "tier", "values": [1, 2]}]}
    records = [row(currency=" USD "), row(currency="GBP"), row(extra={"tier": 3}),
               row(extra={"tier": [1]})]
    out = run(records, rules)
    assert issues(out) == [
        (1, [("allowed_values", "currency", "GBP", "currency must be one of USD, EUR, got GBP")]),
        (2, [("allowed_values", "tier", 3, "tier must be one of 1, 2, got 3")]),
        (3, [("allowed_values", "tier", [1], "tier must be one of 1, 2, got [1]")]),
    ]


def test_regex_is_searched_in_the_value() -> None:
    rules = {"rules": [{"rule": "regex", "field": "campaign_id", "pattern": "^c[0-9]+$"}]}
    out = run([row(), row(campaign_id="x1"), row(campaign_id=12)], rules)
    assert issues(out) == [
        (1, [("regex", "campaign_id", "x1", "campaign_id does not match ^c[0-9]+$: 'x1'")]),
        (2, [("regex", "campaign_id", "12", "campaign_id does not match ^c[0-9]+$: '12'")]),
    ]


def test_length_bounds() -> None:
    rules = {"rules": [{"rule": "length", "field": "campaign_name", "min": 2, "max": 5}]}
    out = run([row(campaign_name="abc"), row(campaign_name="a"), row(campaign_name="abcdef")],
              rules)
    assert [(i, [x[3] for x in found]) for i, found in issues(out)] == [
        (1, ["length of campaign_name must be >= 2 and <= 5, got 'a'"]),
        (2, ["length of campaign_name must be >= 2 and <= 5, got 'abcdef'"]),
    ]


def test_unique_fails_every_record_sharing_a_key_and_skips_null_keys() -> None:
    rules = {"rules": [{"rule": "unique", "fields": ["campaign_id", "date"]}]}
    records = [row(), row(date="2025-05-31"), row(), row(date=None), row(date=None)]
    out = run(records, rules)
    key = {"campaign_id": "c1", "date": date(2025, 5, 30)}
    message = "(campaign_id, date) = (c1, 2025-05-30) appears more than once in the batch"
    assert issues(out) == [(0, [("unique", "campaign_id,date", key, message)]),
                           (2, [("unique", "campaign_id,date", key, message)])]
    assert entry(out, "unique")["partial_unexpected_list"] == [
        {"campaign_id": "c1", "date": "2025-05-30"}] * 2


def test_unique_on_a_field_in_extra_with_unhashable_values() -> None:
    rules = {"rules": [{"rule": "unique", "field": "tags"}]}
    out = run([row(extra={"tags": ["a"]}), row(extra={"tags": ["a"]}),
               row(extra={"tags": ["b"]})], rules)
    assert [(r.index, r.reasons[0]["value"]) for r in out.rejected] == [
        (0, {"tags": ["a"]}), (1, {"tags": ["a"]})]


def test_compare_fields_including_dates_and_undeclared_fields() -> None:
    rules = {"rules": [
        {"rule": "compare", "left": "clicks", "op": "<=", "right": "impressions"},
        {"rule": "compare", "left": "conversions", "op": "<=", "right": "clicks"},
        {"rule": "compare", "left": "end_date", "op": ">=", "right": "start_date",
         "type": "date"},
    ]}
    records = [row(), row(clicks=500), row(conversions=11),
               row(extra={"start_date": "2025-05-02", "end_date": "2025-05-01"}),
               row(extra={"start_date": "2025-05-02", "end_date": "later"})]
    out = run(records, rules)
    assert issues(out) == [
        (1, [("compare", "clicks", {"clicks": 500, "impressions": 100},
              "clicks (500) must be <= impressions (100)")]),
        (2, [("compare", "conversions", {"conversions": Decimal(11), "clicks": 10},
              "conversions (11) must be <= clicks (10)")]),
        (3, [("compare", "end_date", {"end_date": "2025-05-01", "start_date": "2025-05-02"},
              "end_date (2025-05-01) must be >= start_date (2025-05-02)")]),
        (4, [("compare", "end_date", {"end_date": "later", "start_date": "2025-05-02"},
              "end_date: expected a date (YYYY-MM-DD), got 'later'")]),
    ]


def test_compare_a_date_with_a_datetime_by_day() -> None:
    rules = {"rules": [{"rule": "compare", "left": "close_date", "op": ">=",
                        "right": "created_at"}]}
    records = [{"deal_id": "1", "close_date": "2025-05-01", "created_at": "2025-05-01T18:00Z"},
               {"deal_id": "2", "close_date": "2025-04-30", "created_at": "2025-05-01T00:00Z"}]
    out = run(records, rules, CRM_DEALS)
    assert [r.index for r in out.rejected] == [1]


def test_row_count_is_a_batch_level_rule_without_failing_records() -> None:
    out = run([row()], {"rules": [{"rule": "row_count", "min": 2, "max": 10}]})
    report = entry(out, "row_count")
    assert report["success"] is False and report["observed_value"] == 1
    assert report["message"] == "the batch has 1 records; it must have >= 2 and <= 10"
    assert out.result["validation_passed"] is False
    assert out.result["issues_found"] == 1
    assert out.rejected == [] and len(out.records) == 1


def test_freshness_refuses_old_and_future_dates() -> None:
    rules = {"rules": [{"rule": "freshness", "max_age_days": 30}]}
    out = run([row(date="2025-05-02"), row(date="2025-05-01"), row(date="2025-06-02")], rules)
    assert issues(out) == [
        (1, [("freshness", "date", date(2025, 5, 1), "date 2025-05-01 is older than 30 days")]),
        (2, [("freshness", "date", date(2025, 6, 2), "date 2025-06-02 is in the future")]),
    ]
    allowed = run([row(date="2030-01-01")],
                  {"rules": [{"rule": "freshness", "max_age_days": 30, "allow_future": True}]})
    assert allowed.rejected == []


def test_freshness_of_datetimes_and_of_dates_in_extra() -> None:
    rules = {"rules": [{"rule": "freshness", "field": "created_at", "max_age_days": 1},
                       {"rule": "freshness", "field": "seen_on", "max_age_days": 1}]}
    records = [{"deal_id": "1", "created_at": "2025-05-31T12:00:00Z", "seen_on": "2025-05-31"},
               {"deal_id": "2", "created_at": "2025-05-31T11:59:59Z", "seen_on": "2025-05-30"},
               {"deal_id": "3", "created_at": "2025-06-01T12:00:01Z", "seen_on": "June"}]
    out = run(records, rules, CRM_DEALS)
    assert [(i, [x[3] for x in found]) for i, found in issues(out)] == [
        (1, ["created_at 2025-05-31T11:59:59+00:00 is older than 1 days",
             "seen_on 2025-05-30 is older than 1 days"]),
        (2, ["created_at 2025-06-01T12:00:01+00:00 is in the future",
             "seen_on: expected a date (YYYY-MM-DD), got 'June'"]),
    ]


def test_records_that_are_not_objects_are_refused() -> None:
    out = run([row(), "text", [1, 2]])
    assert issues(out) == [
        (1, [("object", None, "text", "record is not a JSON object")]),
        (2, [("object", None, [1, 2], "record is not a JSON object")]),
    ]
    assert out.result["rules"][0]["rule"] == "object"


def test_unknown_fields_are_kept_in_extra() -> None:
    out = run([row(utm_source="news", extra={"a": 1})])
    assert out.records[0]["extra"] == {"a": 1, "utm_source": "news"}
