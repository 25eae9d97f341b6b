"""A compiled rule and what it finds in a batch."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tasks.validation.spec import FAIL

if TYPE_CHECKING:
    from tasks.validation.batch import Batch

DATA_TYPE = "data_type"  # origin of a default rule; a request's rules have origin "request"
REQUEST = "request"


@dataclass
class Outcome:
    """Failing records of one rule, ascending, with the value each one had.

    `messages` holds one message per failure when they differ (coercion errors); otherwise
    the rule's `describe(value)` words them, only for the failures that are reported.
    A batch-level rule has no failing records: it sets `batch_failed` and `observed`.
    """

    indices: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    messages: list[str] | None = None
    batch_failed: bool = False
    observed: Any = None


Check = Callable[["Batch"], Outcome]


@dataclass(frozen=True)
class Rule:
    """One compiled rule: a check over a whole batch, plus how to report and weigh it."""

    name: str
    args: dict[str, Any]
    check: Check
    describe: Callable[[Any], str]
    field: str | None = None
    severity: str = FAIL
    mostly: float = 1.0
    origin: str = REQUEST
    batch_level: bool = False
    # Rules with the same key are the same rule: a later one replaces an earlier one.
    key: Hashable = None

    def passes(self, unexpected: int, total: int) -> bool:
        """At least `mostly` of the records pass (exactly, in decimal: 0.9 of 10 is 9)."""
        if total == 0:
            return True
        return Decimal(total - unexpected) >= Decimal(repr(self.mostly)) * total
