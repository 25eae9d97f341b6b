"""The compiled kernel gives exactly what coerce_record (+ the ratio function) gives."""

from __future__ import annotations

import copy
import random
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from tasks.coerce import coerce_record
from tasks.datatypes import CAMPAIGN_PERFORMANCE, DATA_TYPES, EXTRA_COLUMN
from tasks.processing import kernel as kernel_module
from tasks.processing.core import input_columns
from tasks.processing.kernel import Kernel, shape_source
from tasks.processing.metrics import ratio_context, ratio_function

# Values of every sort a field may carry: the common fast cases and every fallback.
VALUES = [
    None, "", "  ", "abc", "  Spring sale ", "123", " 42 ", "100.5", "-3.25", "1e3", "1E-2",
    "1_000", "NaN", "nan", "Infinity", "-inf", "sNaN", "15.0", "15.5", "-", "0", "0.00",
    "2025-01-15", "20250115", " 20250115 ", "2025-W03-2", "2025-01-15T10:00:00Z",
    "2025-01-15T10:00:00+02:00", "2025-02-30", "1736935200000", "true", "False", "yes", "n",
    0, 1, 7, -4, 2**70, 0.1, 100.0, 15.0, 1.5, float("nan"), float("inf"), True, False,
    Decimal("2.50"), Decimal("NaN"), date(2025, 1, 15), datetime(2025, 1, 15, 10, tzinfo=UTC),
    datetime(2025, 1, 15, 10), [1, 2], {"a": 1}, b"x",
    # Out of range (coerce.OutOfRange): refused, never an overflow further on.
    "1e101", "1e-101", "1e999999", "0e-999999", "99999999999999999999", 2**63, -(2**63) - 1,
    2**63 - 1, 10**101, 1e200, Decimal("1e-200"),
]
EXTRAS = [None, {}, {"note": "kept"}, {"clicks": "from extra"}, "not an object", [1]]


def random_record(rng: random.Random, names: list[str]) -> dict:
    record = {}
    for name in rng.sample(names, rng.randint(0, min(len(names), 14))):
        record[name] = rng.choice(EXTRAS if name == EXTRA_COLUMN else VALUES)
    return record


def reference(record, data_type, columns, ratios: bool):
    with ratio_context():
        out, errors = coerce_record(record, data_type, columns)
        if ratios and not errors:
            ratio_function(data_type)(out)
    return out, errors


def assert_same_as_reference(kernel, record, data_type, columns, ratios: bool):
    before = copy.deepcopy(record)
    try:
        expected = reference(before, data_type, columns, ratios)
    except Exception as exc:  # coerce_record itself fails: the kernel fails the same way
        with pytest.raises(type(exc)):
            kernel.coerce(record)
        return
    got = kernel.coerce(record)
    assert same(got, expected), (before, expected)
    if expected[1] or not kernel.in_place:
        assert same(record, before), "a record is changed only in place, and only if it converts"


def same(a, b) -> bool:
    """Equal, with NaN-free values of the same types (1 == Decimal(1) == True is not enough)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b
    if isinstance(a, Decimal) and a.is_nan():
        return isinstance(b, Decimal) and b.is_nan()
    return type(a) is type(b) and a == b and str(a) == str(b)


@pytest.fixture(autouse=True)
def every_shape_compiled(monkeypatch):
    """Compile a shape for every key set, so the compiled path is what gets compared."""
    monkeypatch.setattr(kernel_module, "MAX_SHAPES", 10**9)


@pytest.mark.parametrize("name", sorted(DATA_TYPES))
@pytest.mark.parametrize(("ratios", "in_place"), [(False, False), (True, False), (True, True)])
def test_random_records_equal_coerce_record(name, ratios, in_place):
    data_type = DATA_TYPES[name]
    columns = input_columns(data_type)
    kernel = Kernel(data_type, columns, ratios=ratios, in_place=in_place)
    rng = random.Random(f"{name}{ratios}{in_place}")
    names = [*columns, "objective", "ctr", "unknown field", "it's \"quoted\""]
    for _ in range(300):
        assert_same_as_reference(kernel, random_record(rng, names), data_type, columns, ratios)


@pytest.mark.parametrize("in_place", [False, True])
def test_every_value_in_every_column_equals_coerce_record(in_place):
    data_type = CAMPAIGN_PERFORMANCE
    kernel = Kernel(data_type, in_place=in_place)
    for column in data_type.all_columns:
        for value in (EXTRAS if column == EXTRA_COLUMN else VALUES):
            for record in ({"campaign_id": "1", column: value},
                           {column: value, "campaign_id": " 1", "other": 2}):
                assert_same_as_reference(kernel, record, data_type, None, False)


@pytest.mark.parametrize("in_place", [False, True])
def test_a_batch_of_mixed_shapes_equals_the_reference_record_by_record(in_place):
    data_type = CAMPAIGN_PERFORMANCE
    columns = input_columns(data_type)
    rng = random.Random(5)
    names = [*columns, "objective"]
    records = []
    for i in range(800):
        record = random_record(rng, names)
        record["campaign_id"] = str(i)  # distinct keys: nothing is deduplicated
        try:
            reference(record, data_type, columns, True)
        except Exception:  # values coerce_record itself cannot take
            continue
        records.append(record)
    records.insert(100, "not an object")
    originals = copy.deepcopy(records)
    output = Kernel(data_type, columns, ratios=True, in_place=in_place).run(records)
    got = {index: record for index, record in output.items}
    bad = {index: errors for index, _, errors in output.bad}
    assert output.duplicates == 0
    for index, record in enumerate(records):
        if index == 100:
            assert bad[index] == [("", None, "expected a JSON object")]
            continue
        out, errors = reference(originals[index], data_type, columns, True)
        if errors:
            assert bad[index] == errors and same(record, originals[index])
        else:
            assert same(got[index], out), originals[index]
            assert (got[index] is record) == in_place or got[index] is not record


def test_same_size_records_with_other_keys_switch_shapes():
    records = [{"campaign_id": "1", "clicks": 1}, {"campaign_id": "2", "reach": 2},
               {"campaign_id": "3", "clicks": 3}]
    output = Kernel(CAMPAIGN_PERFORMANCE).run(records)
    assert [r for _, r in output.items] == records


def test_more_key_sets_than_shapes_go_through_coerce_record(monkeypatch):
    monkeypatch.setattr(kernel_module, "MAX_SHAPES", 2)
    records = [{"campaign_id": str(i), f"field{i}": i} for i in range(6)]
    output = Kernel(CAMPAIGN_PERFORMANCE).run(records)
    assert [r for _, r in output.items] == [
        {"campaign_id": str(i), "extra": {f"field{i}": i}} for i in range(6)]


def test_dedup_last_wins_in_the_place_of_the_first():
    records = [{"campaign_id": "1", "spend": "1"}, {"campaign_id": "2"},
               {"campaign_id": " 1", "spend": "3"}]
    output = Kernel(CAMPAIGN_PERFORMANCE).run(records)
    assert output.items == [(2, {"campaign_id": "1", "spend": Decimal(3)}),
                            (1, {"campaign_id": "2"})]
    assert output.duplicates == 1


def test_generated_source_quotes_names_and_never_contains_values():
    source = shape_source(["campaign_id", "x'); import os; ('"], CAMPAIGN_PERFORMANCE.all_columns,
                          CAMPAIGN_PERFORMANCE.natural_key)
    compile(source, "<test>", "exec")
    record = {"campaign_id": "c", "x'); import os; ('": 1}
    assert Kernel(CAMPAIGN_PERFORMANCE).coerce(record) == (
        {"campaign_id": "c", "extra": {"x'); import os; ('": 1}}, [])


def test_the_input_is_not_modified():
    record = {"campaign_id": " 1 ", "spend": "2", "extra": {"a": 1}, "b": 2}
    snapshot = {**record, "extra": dict(record["extra"])}
    out, _ = Kernel(CAMPAIGN_PERFORMANCE).coerce(record)
    out["extra"]["c"] = 3
    assert record == snapshot


def test_clean_records_never_take_the_slow_path(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("coerce_record called")

    monkeypatch.setattr(kernel_module, "coerce_record", refuse)
    records = [{"source": " meta_ads", "campaign_id": str(i), "date": "2025-01-15",
                "spend": "100.5", "impressions": 10, "clicks": 0, "conversions": 1,
                "currency": "USD", "objective": "x", "extra": {"a": i}} for i in range(50)]
    output = Kernel(CAMPAIGN_PERFORMANCE, input_columns(CAMPAIGN_PERFORMANCE),
                    ratios=True).run(records)
    assert len(output.items) == 50 and not output.bad
    assert output.items[3][1]["extra"] == {"a": 3, "objective": "x"}
    assert output.items[3][1]["ctr"] == 0 and output.items[3][1]["cpc"] is None


def test_a_long_batch_reports_progress_between_chunks(monkeypatch):
    reports = []
    monkeypatch.setattr(kernel_module, "PROGRESS_EVERY", 10)
    monkeypatch.setattr(kernel_module.progress, "report", reports.append)
    records = [{"campaign_id": str(i), "clicks": i} for i in range(35)]
    records[12] = {"campaign_id": "12", "clicks": "twelve"}  # one through coerce_record
    output = Kernel(CAMPAIGN_PERFORMANCE).run(records)
    assert reports == [10, 20, 30]
    assert len(output.items) == 34 and [b[0] for b in output.bad] == [12]
