"""The generated fast coercion gives exactly what tasks.coerce.coerce_record gives.

Property-style: many batches of random records, each batch sharing one key set so its
records take the fast path wherever the values allow, compared value by value (type and
repr, so Decimal("1.50") is not taken for Decimal("1.5")) with the reference.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from tasks.coerce import OutOfRange, coerce_record, to_decimal, to_integer
from tasks.datatypes import CAMPAIGN_PERFORMANCE, CRM_DEALS, WEB_ANALYTICS, DataType
from tasks.validation import program
from tasks.validation.core import validate
from tasks.validation.program import Program, choose_layout

NOW = datetime(2025, 6, 1, tzinfo=UTC)

STRINGS = [
    "100.5", " 7 ", "7", "1_000", "1e3", "-0", "0.000", "1.50", "NaN", "nan", "inf",
    "-Infinity", "sNaN", "", "   ", "abc", "12.0", "15.5", "\u0661\u0662\u0663", "\u00a05",
    "+3", "0x10", "1,000", "2024-01-15", "20240115", "2024-01-15T10:00:00Z",
    "2024-01-15 10:00", "2024-W03-1", " 2024-01-15", "2024-1-5", "2024-02-30", "true",
    "False", "yes", "0", "1", "t", "N", " USD ", "Campaign \u00e9", "\t", "1699999999999",
    "-12.5", "00012", "9" * 30, "1e-7",
    # Out of range: too big or too small to store (coerce.OutOfRange).
    "1e100", "1e101", "-1e101", "1e-100", "1e-101", "1e999999", "0e-999999",
    "99999999999999999999", "9223372036854775807", "-9223372036854775809", "1e1000000",
]
OTHERS = [
    0, 1, -5, 10**20, 2**63, True, False, 0.0, -0.0, 1.5, 100.1, 1e300, 15.0, 1e16,
    float("nan"), float("inf"), Decimal("1.50"), Decimal("NaN"), Decimal("-0"), None, [],
    {}, {"a": 1}, [1, 2], date(2024, 1, 1), datetime(2024, 1, 1, 10),
    datetime(2024, 1, 1, 10, tzinfo=UTC), 1700000000000,
    2**63 - 1, -(2**63), -(2**63) - 1, 10**101, Decimal("1e-101"), Decimal("1e101"), 1e-200,
]
POOL = STRINGS + OTHERS


def strict(record: dict[str, Any]) -> dict[str, Any]:
    """Values with their exact type and repr, so equal-but-different Decimals differ."""
    return {k: (type(v).__name__, repr(v)) for k, v in record.items()}


def typical(kind: str, rng: random.Random) -> Any:
    """A value of the shape orjson gives for the kind, to keep many records fast."""
    return {
        "text": lambda: rng.choice(["abc", " padded ", "123", 123]),
        "integer": lambda: rng.choice([0, 5, 10**12, "42"]),
        "decimal": lambda: rng.choice(["100.5", 7, 2.25, "0.10", Decimal("3.30")]),
        "date": lambda: rng.choice(["2025-01-31", date(2024, 2, 29)]),
        "datetime": lambda: rng.choice(["2025-01-31T10:00:00Z", 1700000000000]),
        "boolean": lambda: rng.choice([True, False, "yes", 0]),
        "json": lambda: rng.choice([{"k": 1}, {"a": [1]}]),
    }[kind]()


def random_batch(data_type: DataType, rng: random.Random) -> list[dict[str, Any]]:
    columns = data_type.all_columns
    names = [c for c in columns if c not in ("job_id", "ingested_at", "updated_at")]
    keys = rng.sample(names, rng.randint(1, min(10, len(names))))
    if rng.random() < 0.3:
        keys.append(rng.choice(["foo", "utm_source", "notes"]))
    batch = []
    for _ in range(rng.randint(1, 30)):
        record = {}
        for key in keys:
            kind = columns.get(key, "text")
            record[key] = rng.choice(POOL) if rng.random() < 0.3 else typical(kind, rng)
        if rng.random() < 0.1:  # some records leave the layout
            record.pop(rng.choice(keys), None)
        batch.append(record)
    return batch


def coerce_all(records: list[Any], data_type: DataType):
    program = Program([], data_type, choose_layout(records, data_type.all_columns), NOW)
    return program.run(records)


@pytest.mark.parametrize("data_type", [CAMPAIGN_PERFORMANCE, CRM_DEALS, WEB_ANALYTICS],
                         ids=lambda d: d.name)
def test_fast_coercion_equals_coerce_record_on_random_batches(
        data_type: DataType, monkeypatch: pytest.MonkeyPatch) -> None:
    slow_calls = []
    reference = program.coerce_safely
    monkeypatch.setattr(program, "coerce_safely",
                        lambda *args: slow_calls.append(1) or reference(*args))
    rng = random.Random(20250601)
    total = 0
    for _ in range(300):
        records = random_batch(data_type, rng)
        total += len(records)
        run = coerce_all(records, data_type)
        errors_by_record: dict[int, set[tuple[str, str, str]]] = {}
        for failure in run.failures:
            rule = run.rules[failure[0]]
            errors_by_record.setdefault(failure[1], set()).add(
                (rule.field, repr(failure[2]), failure[3]))
        for index, record in enumerate(records):
            try:
                expected, errors = coerce_record(record, data_type)
            except (OverflowError, OSError, ValueError):
                continue  # the reference itself fails: see test_values_the_reference_crashes_on

            assert strict(run.records[index]) == strict(expected), record
            assert errors_by_record.get(index, set()) == {
                (f, repr(v), m) for f, v, m in errors}, record
    assert len(slow_calls) < 0.7 * total  # the fast path is well exercised


def test_every_pool_value_in_every_kind_matches_the_reference() -> None:
    # One column of each kind, every pool value, as a uniform batch (fast path first).
    data_type = CRM_DEALS  # text, decimal, date, datetime, boolean
    for field in ("deal_name", "amount", "close_date", "created_at", "is_won"):
        for value in POOL:
            records = [{"deal_id": "1", field: value}] * 3
            run = coerce_all(records, data_type)
            try:
                expected, errors = coerce_record(records[0], data_type)
            except (OverflowError, OSError, ValueError):
                continue
            assert strict(run.records[0]) == strict(expected), (field, value)
            assert [(f[2], f[3]) for f in run.failures if f[1] == 0] == [
                (v, m) for _, v, m in errors], (field, value)
    for value in POOL:
        records = [{"campaign_id": "1", "impressions": value}] * 2
        run = coerce_all(records, CAMPAIGN_PERFORMANCE)
        expected, _ = coerce_record(records[0], CAMPAIGN_PERFORMANCE)
        assert strict(run.records[0]) == strict(expected), value


def test_valid_records_are_what_coerce_record_returns() -> None:
    rows = [
        {"campaign_id": " 9 ", "spend": "100.50", "impressions": 10, "clicks": 1,
         "conversions": 0, "date": "2025-05-01", "extra": {"utm": "x"}},
        {"campaign_id": 9, "spend": 100.1, "impressions": "10", "clicks": 1.0,
         "conversions": "0", "date": "20250501", "utm": "y"},
    ]
    records = orjson.loads(orjson.dumps(rows))
    out = validate(records, CAMPAIGN_PERFORMANCE, None, now=NOW)
    assert [strict(r) for r in out.records] == [
        strict(coerce_record(r, CAMPAIGN_PERFORMANCE)[0]) for r in records]
    assert out.records[0]["spend"] == Decimal("100.50")
    assert str(out.records[1]["spend"]) == "100.1"
    assert out.records[1]["extra"] == {"utm": "y"}


def test_the_input_records_are_left_as_they_came() -> None:
    records = [{"campaign_id": " 1 ", "spend": "5"}, {"campaign_id": "2", "spend": "-1"}]
    before = orjson.dumps(records)
    out = validate(records, CAMPAIGN_PERFORMANCE, None, now=NOW)
    assert orjson.dumps(records) == before
    assert out.rejected[0].record is records[1]


def test_values_the_reference_crashes_on_are_type_errors() -> None:
    # tasks.coerce.to_datetime lets fromtimestamp's OverflowError escape for these.
    records = [{"deal_id": "1", "created_at": value} for value in (1e300, float("inf"), 10**20)]
    out = validate(records, CRM_DEALS, None, now=NOW)
    assert out.records == []
    assert [(r.index, [reason["rule"] for reason in r.reasons]) for r in out.rejected] == [
        (0, ["type"]), (1, ["type"]), (2, ["type"])]
    assert out.rejected[0].reasons[0]["field"] == "created_at"


@pytest.mark.parametrize("value", ["1e101", "-1e101", "1e-101", "1e999999", "0e-999999",
                                   10**101, 1e200, Decimal("1e-200"), Decimal("1e101")])
def test_a_number_beyond_1e100_either_way_is_out_of_range(value: Any) -> None:
    with pytest.raises(OutOfRange, match="number out of range"):
        to_decimal(value)


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, "99999999999999999999", "1e1000000",
                                   "9" * 5000])
def test_an_integer_beyond_64_bits_is_out_of_range(value: Any) -> None:
    # "1e1000000" is refused before int() builds a million digits (seconds of CPU).
    with pytest.raises(OutOfRange):
        to_integer(value)


def test_the_edges_of_the_ranges_are_in_range() -> None:
    assert to_decimal("1e100") == Decimal("1e100")
    assert to_decimal("-1e-100") == Decimal("-1e-100")
    assert to_decimal("0.00") == Decimal("0.00")
    assert to_integer(2**63 - 1) == 2**63 - 1
    assert to_integer("-9223372036854775808") == -(2**63)


def test_a_record_with_a_number_out_of_range_is_refused_with_the_reason() -> None:
    records = [{"campaign_id": "ok", "date": "2025-01-01", "spend": "1.5", "impressions": 1},
               {"campaign_id": "big", "date": "2025-01-01", "spend": "1e999999",
                "impressions": 1},
               {"campaign_id": "wide", "date": "2025-01-01", "spend": "1",
                "impressions": "99999999999999999999"}]
    output = validate(records, CAMPAIGN_PERFORMANCE, now=NOW)
    assert [r["campaign_id"] for r in output.records] == ["ok"]
    reasons = {r.record["campaign_id"]: orjson.dumps(r.reasons).decode()
               for r in output.rejected}
    assert "number out of range" in reasons["big"]
    assert "integer out of range" in reasons["wide"]
