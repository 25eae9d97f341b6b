"""A compiled rule: what it tests on each record (for the code generator) and how it is
reported and weighed."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tasks.validation.spec import FAIL

DATA_TYPE = "data_type"  # origin of a default rule; a request's rules have origin "request"
REQUEST = "request"

# Test kinds the code generator writes inline; "call" runs a helper per non-null value.
REQUIRED = "required"
NOT_NULL = "not_null"
FORBIDDEN = "forbidden"
BOUNDS = "bounds"
ALLOWED = "allowed"
REGEX = "regex"
LENGTH = "length"
COMPARE = "compare"
CALL = "call"
UNIQUE = "unique"
COERCION = "coercion"  # failures come from coercion itself
FRESHNESS = "freshness"
ROW_COUNT = "row_count"


@dataclass(frozen=True)
class Test:
    """What a rule checks, in a form the generator turns into code.

    `fields` are the fields it reads; `params` are its constants (bounds, allowed set,
    compiled pattern, operator, helper function).
    """

    kind: str
    fields: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    """One compiled rule: its test, plus how to report and weigh its failures."""

    name: str
    args: dict[str, Any]
    test: Test
    describe: Callable[[Any], str]
    field: str | None = None
    severity: str = FAIL
    mostly: float = 1.0
    origin: str = REQUEST
    # Rules with the same key are the same rule: a later one replaces an earlier one.
    key: Hashable = None

    @property
    def batch_level(self) -> bool:
        return self.test.kind == ROW_COUNT

    def passes(self, unexpected: int, total: int) -> bool:
        """At least `mostly` of the records pass (exactly, in decimal: 0.9 of 10 is 9)."""
        if total == 0:
            return True
        return Decimal(total - unexpected) >= Decimal(repr(self.mostly)) * total
