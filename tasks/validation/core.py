"""The validate stage core: rules over a batch; valid records go on, invalid ones are refused.

How the pieces fit (each module has one job):
  spec.py      reading `validation_rules`: policies, severities, RuleSpecError
  catalogue.py every rule's written form and the builder that compiles it
  compile.py   defaults of the data type + the request's rules -> CompiledRules
  convert.py   column-at-a-time coercion, equal to tasks.coerce.coerce_record
  batch.py     the coerced batch and the columns the checks read
  checks.py    the checks, one closure per compiled rule
  result.py    quarantine split and the GE-style, capped result

Semantics of `mostly` and `severity`:
  - A record failing a `fail` rule is always quarantined (with all its issues, warnings
    included), whatever `mostly` says: a record known to be wrong is never stored.
  - `mostly` decides whether the rule succeeds: at least that share of the batch's records
    must pass it. `validation_passed` is false when any `fail` rule does not succeed.
  - A `warn` rule never removes a record; it is reported in the result only.
  - A batch-level rule (row_count) has no failing records: it only decides success.
  - on_invalid "reject_batch" rejects the whole batch exactly when validation did not pass
    (`result["batch_rejected"]`); "quarantine" lets the valid records go on.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tasks.datatypes import DataType
from tasks.stage import StageOutput
from tasks.validation.batch import coerce_batch
from tasks.validation.catalogue import FORMS, RULE_NAMES
from tasks.validation.compile import CompiledRules, batch_rules, compile_rules
from tasks.validation.result import split, summarise
from tasks.validation.spec import (
    ON_INVALID,
    QUARANTINE,
    REJECT_BATCH,
    RuleSpecError,
    on_invalid_policy,
)

__all__ = [
    "FORMS", "ON_INVALID", "QUARANTINE", "REJECT_BATCH", "RULE_NAMES", "CompiledRules",
    "RuleSpecError", "compile_rules", "on_invalid_policy", "rejection_message", "validate",
]


def validate(
    records: list[dict[str, Any]],
    data_type: DataType,
    rules: Mapping[str, Any] | CompiledRules | None = None,
    *,
    now: datetime | None = None,
) -> StageOutput:
    """Coerce and check a batch; `now` (aware, default the current UTC time) is for freshness."""
    compiled = rules if isinstance(rules, CompiledRules) else compile_rules(data_type, rules)
    now = datetime.now(UTC) if now is None else now
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    batch = coerce_batch(records, data_type, now)
    active = batch_rules(compiled, batch.fields_seen, bool(batch.not_objects))
    evaluated = [(rule, rule.check(batch)) for rule in active]
    valid, rejected = split(batch, evaluated)
    return StageOutput(
        records=valid,
        rejected=rejected,
        records_in=len(records),
        result=summarise(batch, evaluated, len(valid), len(rejected), compiled.on_invalid),
    )


def rejection_message(output: StageOutput) -> str | None:
    """Why the whole batch must be refused (on_invalid reject_batch and validation did not
    pass), or None when its valid records may go on."""
    result = output.result
    if not result.get("batch_rejected"):
        return None
    failed = [r["rule"] + (f" {r['field']}" if r.get("field") else "")
              for r in result["rules"] if r["severity"] == "fail" and not r["success"]]
    return (f"validation did not pass ({', '.join(failed)}); {result['invalid_count']} of "
            f"{result['records_count']} records are invalid and on_invalid is reject_batch: "
            "nothing was stored")
