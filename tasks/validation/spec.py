"""Reading `validation_rules`: severities and one rule's arguments, with errors that say
where the problem is and what form was expected (they become the API's 422)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

QUARANTINE = "quarantine"
REJECT_BATCH = "reject_batch"
ON_INVALID = (QUARANTINE, REJECT_BATCH)

FAIL = "fail"
WARN = "warn"
SEVERITIES = (FAIL, WARN)

COMMON_FORM = '"mostly"?: <share of records that must pass, 0..1, default 1.0>, ' \
    '"severity"?: "fail" | "warn" (default "fail")'


class RuleSpecError(ValueError):
    """`validation_rules` that cannot be compiled; details name the rule and the expected form."""

    def __init__(self, message: str, details: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.details = dict(details)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


class RuleArgs:
    """One rule object being read: every accessor validates, `finish` refuses leftovers.

    `form` and `known` go into every error, so a client sees how the rule is written.
    """

    def __init__(self, spec: Mapping[str, Any], name: str, path: str, form: str,
                 known: Sequence[str]) -> None:
        self.spec = spec
        self.name = name
        self.path = path
        self.form = form
        self.known = list(known)
        self._read = {"rule"}

    def error(self, problem: str, arg: str | None = None) -> RuleSpecError:
        where = f"{self.path}.{arg}" if arg else self.path
        return RuleSpecError(
            f"{where} ({self.name}): {problem}",
            {"field": where, "rule": self.name, "problem": problem,
             "expected": self.form, "known_rules": self.known},
        )

    def has(self, key: str) -> bool:
        return key in self.spec

    def get(self, key: str, default: Any = None) -> Any:
        self._read.add(key)
        return self.spec.get(key, default)

    def field(self, key: str = "field", required: bool = True) -> str | None:
        value = self.get(key)
        if value is None and not required:
            return None
        # Exactly str: names are written into generated code as literals.
        if value.__class__ is not str or not value:
            raise self.error("must be a field name (a non-empty string)", key)
        return value

    def fields(self) -> list[str]:
        """`"field": name` or `"fields": [name, ...]` (one of the two, not both)."""
        if self.has("field") == self.has("fields"):
            raise self.error('give either "field" or "fields"')
        if self.has("field"):
            return [self.field()]  # type: ignore[list-item]
        value = self.get("fields")
        if (not isinstance(value, list) or not value
                or not all(v.__class__ is str and v for v in value)):
            raise self.error("must be a non-empty list of field names", "fields")
        if len(set(value)) != len(value):
            raise self.error("names a field twice", "fields")
        return value

    def integer(self, key: str, minimum: int = 0) -> int | None:
        value = self.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(f"must be an integer >= {minimum}", key)
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self.error("must be true or false", key)
        return value

    def choice(self, key: str, choices: Sequence[str], default: str | None = None) -> str:
        value = self.get(key, default)
        if value not in choices:
            raise self.error(f"must be one of {', '.join(map(repr, choices))}", key)
        return value

    def severity(self) -> str:
        return self.choice("severity", SEVERITIES, FAIL)

    def mostly(self) -> float:
        value = self.get("mostly", 1.0)
        if not _is_number(value) or not 0 <= value <= 1:
            raise self.error("must be a number between 0 and 1", "mostly")
        return float(value)

    def finish(self) -> None:
        unknown = sorted(set(self.spec) - self._read)
        if unknown:
            raise self.error(f"unknown argument(s) {', '.join(map(repr, unknown))}")
