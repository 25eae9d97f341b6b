"""Keys compared as text across chunks agree with Python's equality within one chunk."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

from tasks.storage.repeats import key_text


def test_values_equal_in_python_have_one_text_and_others_do_not():
    assert key_text(1) == key_text(1.0) == key_text(Decimal("1.00")) == key_text(True)
    assert key_text(1000) == key_text(Decimal("1000.0")) == key_text(Decimal("1E+3"))
    assert key_text(Decimal("2.50")) == key_text(2.5) != key_text(Decimal("2.05"))
    assert key_text(Decimal("0E-8")) == key_text(0) == key_text(Decimal("-0"))
    assert key_text("1") != key_text(1)  # a text is not a number
    assert key_text(["n", "1"]) != key_text(1)  # nor a list that looks like the tag
    noon = datetime(2025, 1, 1, 12, tzinfo=UTC)
    assert key_text(noon) == key_text(noon.astimezone(timezone(timedelta(hours=2))))
    assert key_text(noon) != key_text(noon.replace(tzinfo=None))  # naive != aware


def test_huge_numbers_and_nan():
    assert key_text(Decimal("1e5000")) == key_text(Decimal("10e4999"))  # no 5000 digits
    assert key_text(float("nan")) is None and key_text(("a", Decimal("NaN"))) is None


def test_tuples_dates_nulls_and_nested_values():
    assert key_text(("a", date(2025, 1, 2), None)) == key_text(("a", date(2025, 1, 2), None))
    assert key_text(("a", None)) != key_text((None, "a"))
    assert key_text({"b": 1, "a": 2}) == key_text({"a": 2, "b": 1})
    assert key_text(("a", Decimal("3.0"))) == key_text(("a", 3))
