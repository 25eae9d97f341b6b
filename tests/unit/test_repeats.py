"""Keys compared as text across chunks agree with Python's equality within one chunk."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from tasks.storage.repeats import key_text


def test_equal_numbers_have_one_text_and_other_values_stay_apart():
    assert key_text(1) == key_text(1.0) == key_text(Decimal("1.00")) == key_text(Decimal("1"))
    assert key_text(Decimal("2.50")) == key_text(2.5) != key_text(Decimal("2.05"))
    assert key_text(Decimal("0E-8")) == key_text(0)
    assert key_text("1") != key_text(1)  # a text is not a number
    assert key_text(True) != key_text(1)  # nor is a boolean
    assert key_text(["n", "1"]) != key_text(1)  # nor a list that looks like the tag


def test_tuples_dates_nulls_and_nested_values():
    assert key_text(("a", date(2025, 1, 2), None)) == key_text(("a", date(2025, 1, 2), None))
    assert key_text(("a", None)) != key_text((None, "a"))
    assert key_text({"b": 1, "a": 2}) == key_text({"a": 2, "b": 1})
    assert key_text(("a", Decimal("3.0"))) == key_text(("a", 3))
