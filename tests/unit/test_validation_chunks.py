"""A batch checked a chunk at a time gives the result of the batch checked at once: counts
over the whole batch, capped lists holding its first failures, mostly and row_count on
its size."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tasks.datatypes import CAMPAIGN_PERFORMANCE
from tasks.validation.core import Validation, validate

NOW = datetime(2025, 6, 1, tzinfo=UTC)
RULES = {
    "required_fields": ["campaign_id"],
    "rules": [
        {"rule": "non_negative", "field": "spend", "mostly": 0.5},
        {"rule": "row_count", "min": 500},
        {"rule": "allowed_values", "field": "currency", "values": ["EUR"], "severity": "warn"},
    ],
}


def _records(n: int) -> list[Any]:
    out: list[Any] = []
    for i in range(n):
        record: Any = {"campaign_id": f"c{i}", "spend": str(i % 7 - 2), "currency": "EUR",
                       "impressions": 100, "clicks": 10}
        if i % 11 == 0:
            record["currency"] = "USD"
        if i % 13 == 0:
            record["impressions"] = "lots"
        if i % 97 == 0:
            record = [record]  # not an object
        out.append(record)
    return out


def _in_chunks(records: list[Any], size: int) -> tuple[dict[str, Any], list[int]]:
    validation = Validation(CAMPAIGN_PERFORMANCE, RULES, now=NOW)
    refused: list[int] = []
    for offset in range(0, len(records), size):
        _, rejected = validation.check(records[offset:offset + size], offset)
        refused += [offset + r.index for r in rejected]
    return validation.result(), refused


def _without_time(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "validated_at"}


def test_chunks_give_the_whole_batch_result_and_the_same_refused_records() -> None:
    records = _records(420)
    whole = validate(records, CAMPAIGN_PERFORMANCE, RULES, now=NOW)
    for size in (1, 7, 100, 420):
        result, refused = _in_chunks(records, size)
        assert _without_time(result) == _without_time(whole.result), size
        assert refused == [r.index for r in whole.rejected]
    spend = next(r for r in whole.result["rules"] if r["rule"] == "non_negative")
    assert spend["unexpected_count"] == 119 and len(spend["unexpected_index_list"]) == 100
    assert spend["success"] is True  # 71 % pass, mostly 0.5
    row_count = next(r for r in whole.result["rules"] if r["rule"] == "row_count")
    assert row_count["success"] is False and row_count["observed_value"] == 420
    assert whole.result["failure_cases_truncated"] is True
