"""mostly, severity, on_invalid, replacing defaults, statistics and capped result lists."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from tasks.datatypes import CAMPAIGN_PERFORMANCE
from tasks.stage import StageOutput
from tasks.validation.core import compile_rules, rejection_message, validate
from tasks.validation.result import (
    FAILURE_CASES_CAP,
    PARTIAL_UNEXPECTED_CAP,
    UNEXPECTED_INDEX_CAP,
)

NOW = datetime(2025, 6, 1, tzinfo=UTC)
BASE = {"campaign_id": "c1", "spend": "10", "impressions": 100, "clicks": 10, "conversions": 1}


def run(records: list[Any], rules: dict[str, Any] | None = None) -> StageOutput:
    return validate(records, CAMPAIGN_PERFORMANCE, rules, now=NOW)


def entry(out: StageOutput, rule: str, field: str) -> dict[str, Any]:
    [found] = [r for r in out.result["rules"] if r["rule"] == rule and r.get("field") == field]
    return found


def test_mostly_decides_success_but_failing_records_are_still_quarantined() -> None:
    records = [BASE, BASE, BASE, {**BASE, "spend": "-1"}]
    out = run(records, {"rules": [{"rule": "non_negative", "field": "spend", "mostly": 0.75}]})
    report = entry(out, "non_negative", "spend")
    assert report["success"] is True and report["mostly"] == 0.75
    assert report["unexpected_count"] == 1 and report["unexpected_percent"] == 25.0
    assert out.result["validation_passed"] is True
    assert [r.index for r in out.rejected] == [3]
    assert out.result["invalid_count"] == 1 and out.result["valid_count"] == 3

    stricter = run(records, {"rules": [{"rule": "non_negative", "field": "spend",
                                        "mostly": 0.8}]})
    assert stricter.result["validation_passed"] is False


def test_mostly_is_exact_at_the_boundary() -> None:
    records = [BASE] * 9 + [{**BASE, "clicks": 500}]
    rule = {"rule": "compare", "left": "clicks", "op": "<=", "right": "impressions",
            "mostly": 0.9}
    assert run(records, {"rules": [rule]}).result["validation_passed"] is True


def test_a_warning_never_removes_a_record_but_is_reported() -> None:
    rules = {"rules": [{"rule": "range", "field": "spend", "max": 5, "severity": "warn"}]}
    out = run([BASE, {**BASE, "spend": "3"}], rules)
    assert out.rejected == [] and len(out.records) == 2
    report = [r for r in out.result["rules"] if r["rule"] == "range"][0]
    assert report["severity"] == "warn" and report["success"] is False
    assert out.result["validation_passed"] is True
    assert out.result["issues_found"] == 1
    assert out.result["issues_by_severity"] == {"fail": 0, "warn": 1}
    assert out.result["failure_cases"] == [{
        "index": 0, "field": "spend", "rule": "range", "value": "10", "severity": "warn",
        "message": "spend must be <= 5, got 10"}]


def test_a_quarantined_record_carries_its_warnings_too() -> None:
    rules = {"rules": [{"rule": "range", "field": "spend", "max": 5, "severity": "warn"}]}
    out = run([{**BASE, "impressions": -1}], rules)
    assert [(x["rule"], x["severity"]) for x in out.rejected[0].reasons] == [
        ("non_negative", "fail"), ("range", "warn")]


def test_a_request_rule_replaces_the_default_with_the_same_key() -> None:
    rules = {"rules": [{"rule": "non_negative", "field": "spend", "severity": "warn"}]}
    out = run([{**BASE, "spend": "-3"}], rules)
    report = entry(out, "non_negative", "spend")
    assert report["severity"] == "warn" and report["origin"] == "request"
    assert out.rejected == []
    assert len([r for r in out.result["rules"] if r["rule"] == "non_negative"]) == 6


def test_reject_batch_is_decided_by_validation_passed() -> None:
    bad = [BASE, {**BASE, "spend": "-1"}]
    out = run(bad, {"on_invalid": "reject_batch"})
    assert out.result["batch_rejected"] is True
    assert rejection_message(out.result) == (
        "validation did not pass (non_negative spend); 1 of 2 records are invalid and "
        "on_invalid is reject_batch: nothing was stored")
    tolerated = run(bad, {"on_invalid": "reject_batch",
                          "rules": [{"rule": "non_negative", "field": "spend", "mostly": 0.5}]})
    assert tolerated.result["batch_rejected"] is False
    assert rejection_message(tolerated.result) is None
    too_few = run([BASE], {"on_invalid": "reject_batch",
                           "rules": [{"rule": "row_count", "min": 2}]})
    assert too_few.rejected == [] and too_few.result["batch_rejected"] is True
    assert run(bad).result["batch_rejected"] is False  # quarantine: valid records go on


def test_statistics_count_the_rules() -> None:
    out = run([BASE, {**BASE, "spend": "-1"}])
    stats = out.result["statistics"]
    assert stats["evaluated_expectations"] == len(out.result["rules"])
    assert stats["unsuccessful_expectations"] == 1
    assert stats["successful_expectations"] == stats["evaluated_expectations"] - 1
    assert out.result["element_count"] == 2


def test_result_lists_are_capped_while_every_record_keeps_its_reasons() -> None:
    records = [{**BASE, "campaign_id": f"c{i}", "spend": "-1"} for i in range(1000)]
    out = run(records)
    report = entry(out, "non_negative", "spend")
    assert report["unexpected_count"] == 1000
    assert len(report["partial_unexpected_list"]) == PARTIAL_UNEXPECTED_CAP
    assert report["unexpected_index_list"] == list(range(UNEXPECTED_INDEX_CAP))
    assert len(out.result["failure_cases"]) == FAILURE_CASES_CAP
    assert out.result["failure_cases_truncated"] is True
    assert len(out.rejected) == 1000 and all(len(r.reasons) == 1 for r in out.rejected)
    assert len(orjson.dumps(out.result)) < 20_000


def test_the_result_is_plain_json() -> None:
    records = [{**BASE, "spend": "-1.50", "date": "2025-05-01"}]
    out = run(records, {"rules": [{"rule": "range", "field": "date", "min": "2025-05-02"}]})
    assert orjson.loads(orjson.dumps(out.result)) == out.result
    assert entry(out, "non_negative", "spend")["partial_unexpected_list"] == ["-1.50"]
    assert entry(out, "range", "date")["partial_unexpected_list"] == ["2025-05-01"]


def test_compiled_rules_can_be_reused_and_an_empty_batch_passes() -> None:
    compiled = compile_rules(CAMPAIGN_PERFORMANCE, {"required_fields": ["spend"]})
    assert run([], None).result["validation_passed"] is True
    out = validate([BASE], CAMPAIGN_PERFORMANCE, compiled)
    assert out.result["validation_passed"] is True and out.records_in == 1


def test_mixed_layouts_take_the_slow_path_with_the_same_result() -> None:
    records = [BASE, {"campaign_id": "c2", "spend": 5}, {**BASE, "utm": "x"}, BASE]
    out = run(records)
    assert [r.get("extra") for r in out.records] == [None, None, {"utm": "x"}, None]
    assert out.result["validation_passed"] is True
