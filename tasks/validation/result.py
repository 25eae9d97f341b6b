"""From what the program found to the stage's output: valid records, quarantined records
with their reasons, and a GE-style result whose lists are capped so its size does not
grow with the batch (the per-record reasons go to quarantine, not into the result).
A batch may be checked a chunk at a time: `Tally` adds the chunks' failures up."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from itertools import compress, count, islice, repeat
from typing import Any

from tasks import jsontext
from tasks.stage import utc_timestamp
from tasks.storage.quarantine import Rejected
from tasks.validation.model import ROW_COUNT, Rule
from tasks.validation.program import Run
from tasks.validation.spec import FAIL, REJECT_BATCH, SEVERITIES

PARTIAL_UNEXPECTED_CAP = 20
UNEXPECTED_INDEX_CAP = 100
FAILURE_CASES_CAP = 100
VALUE_PREVIEW_CHARS = 200


@dataclass
class Outcome:
    """One rule's failures over a batch: how many, and the first few in record order (a
    message is None where `describe` words it); or for a batch-level rule whether it
    failed and what it measured."""

    count: int = 0
    indices: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    messages: list[str | None] = field(default_factory=list)
    batch_failed: bool = False
    observed: Any = None


Evaluated = list[tuple[Rule, Outcome]]

# Failures kept per rule: enough for every capped list of the result.
KEPT_PER_RULE = max(PARTIAL_UNEXPECTED_CAP, UNEXPECTED_INDEX_CAP, FAILURE_CASES_CAP)


class Tally:
    """Failures per rule over a batch checked a chunk at a time (a whole batch is one
    chunk): counts, and the first failures of each rule, which are all the result shows."""

    def __init__(self) -> None:
        self._outcomes: list[Outcome] = []

    def add(self, run: Run, offset: int) -> None:
        """A chunk's run; its indices are relative to the chunk starting at `offset`."""
        grouped = self._outcomes
        grouped += [Outcome() for _ in range(len(run.rules) - len(grouped))]
        for failure in run.failures:  # in record order for each rule
            outcome = grouped[failure[0]]
            outcome.count += 1
            if len(outcome.indices) < KEPT_PER_RULE:
                outcome.indices.append(offset + failure[1])
                outcome.values.append(failure[2])
                outcome.messages.append(failure[3] if len(failure) > 3 else None)

    def evaluated(self, rules: list[Rule], size: int) -> Evaluated:
        """Every rule with its outcome over the `size` records of the batch, in rule order
        (a non-object check first)."""
        grouped = self._outcomes + [Outcome() for _ in range(len(rules) - len(self._outcomes))]
        for rule, outcome in zip(rules, grouped, strict=True):
            if rule.test.kind == ROW_COUNT:
                low, high = rule.test.params["low"], rule.test.params["high"]
                outcome.observed = size
                outcome.batch_failed = (low is not None and size < low) or (
                    high is not None and size > high)
        evaluated = list(zip(rules, grouped, strict=True))
        evaluated.sort(key=lambda pair: pair[0].name != "object")
        return evaluated


def _preview(value: Any) -> Any:
    if isinstance(value, str) and len(value) > VALUE_PREVIEW_CHARS:
        return value[:VALUE_PREVIEW_CHARS] + "..."
    return value


def jsonable(values: list[Any]) -> list[Any]:
    """Plain JSON values (the job row is JSON): Decimal as its string, dates ISO, long
    strings cut."""
    try:
        plain = jsontext.plain(values)
    except TypeError:  # an odd object: show those as text
        plain = [_plain(v) for v in values]
    return [_preview(v) for v in plain]


def _plain(value: Any) -> Any:
    try:
        return jsontext.plain(value)
    except TypeError:
        return repr(value)


def _message(rule: Rule, outcome: Outcome, k: int) -> str:
    message = outcome.messages[k]
    return message if message is not None else rule.describe(outcome.values[k])


def split(raw: list[Any], run: Run) -> tuple[list[dict[str, Any]], list[Rejected]]:
    """Records failing any fail-severity rule are quarantined as they came, with every
    issue they have (warnings included); the others go on, canonical."""
    if not run.invalid:
        return run.records, []  # type: ignore[return-value]  # no None: all are objects
    reasons: dict[int, list[dict[str, Any]]] = {i: [] for i in sorted(run.invalid)}
    for failure in run.failures:
        bucket = reasons.get(failure[1])
        if bucket is not None:
            rule = run.rules[failure[0]]
            value = failure[2]
            bucket.append({
                "rule": rule.name, "field": rule.field, "value": value,
                "message": failure[3] if len(failure) > 3 else rule.describe(value),
                "severity": rule.severity,
            })
    keep = bytearray(b"\x01") * len(run.records)
    for index in run.invalid:
        keep[index] = 0
    valid = list(compress(run.records, keep))
    return valid, [Rejected(i, raw[i], found) for i, found in reasons.items()]  # type: ignore[misc]


def rule_report(rule: Rule, outcome: Outcome, size: int) -> dict[str, Any]:
    unexpected = outcome.count
    success = (not outcome.batch_failed if rule.batch_level
               else rule.passes(unexpected, size))
    report: dict[str, Any] = {
        "rule": rule.name, **rule.args,
        "severity": rule.severity, "mostly": rule.mostly, "origin": rule.origin,
        "success": success,
        "unexpected_count": unexpected,
        "unexpected_percent": round(100 * unexpected / size, 4) if size else 0.0,
        "partial_unexpected_list": jsonable(outcome.values[:PARTIAL_UNEXPECTED_CAP]),
        "unexpected_index_list": outcome.indices[:UNEXPECTED_INDEX_CAP],
    }
    if rule.batch_level:
        report["observed_value"] = outcome.observed
        if not success:
            report["message"] = rule.describe(outcome.observed)
    return report


def failure_cases(evaluated: Evaluated) -> list[dict[str, Any]]:
    """The first failures in record order, across all rules, capped."""
    streams = [
        zip(outcome.indices, repeat(position), count())
        for position, (_, outcome) in enumerate(evaluated)
    ]
    cases = []
    for index, position, k in islice(heapq.merge(*streams), FAILURE_CASES_CAP):
        rule, outcome = evaluated[position]
        cases.append({
            "index": index, "field": rule.field, "rule": rule.name,
            "value": outcome.values[k], "severity": rule.severity,
            "message": _message(rule, outcome, k),
        })
    values = jsonable([case["value"] for case in cases])
    for case, value in zip(cases, values, strict=True):
        case["value"] = value
    return cases


def summarise(evaluated: Evaluated, size: int, valid_count: int, invalid_count: int,
              on_invalid: str) -> dict[str, Any]:
    """The stage result: the seed's fields first, then counts, statistics and rules."""
    reports = [rule_report(rule, outcome, size) for rule, outcome in evaluated]
    passed = all(r["success"] for r in reports if r["severity"] == FAIL)
    by_severity = dict.fromkeys(SEVERITIES, 0)
    for rule, outcome in evaluated:
        # A failed batch-level rule is one issue; it has no failing records.
        by_severity[rule.severity] += outcome.count + outcome.batch_failed
    successful = sum(r["success"] for r in reports)
    cases = failure_cases(evaluated)
    total_failures = sum(outcome.count for _, outcome in evaluated)
    return {
        "validated_at": utc_timestamp(),
        "validation_passed": passed,
        "issues_found": sum(by_severity.values()),
        "records_count": size,
        "valid_count": valid_count,
        "invalid_count": invalid_count,
        "on_invalid": on_invalid,
        "batch_rejected": on_invalid == REJECT_BATCH and not passed,
        "issues_by_severity": by_severity,
        "element_count": size,
        "statistics": {
            "evaluated_expectations": len(reports),
            "successful_expectations": successful,
            "unsuccessful_expectations": len(reports) - successful,
            "success_percent": round(100 * successful / len(reports), 4) if reports else 100.0,
        },
        "rules": reports,
        "failure_cases": cases,
        "failure_cases_truncated": total_failures > len(cases),
        "status": "success",
    }
