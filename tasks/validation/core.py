"""The validate stage core: rules over a batch; valid records go on, invalid ones are refused.

How the pieces fit (each module has one job):
  spec.py      RuleSpecError, policies and severities, reading one rule's arguments
  catalogue.py every rule's written form (FORMS) and the builder that compiles it
  compile.py   the data type's defaults + the request's rules -> CompiledRules
  model.py     a compiled Rule and the Test the code generator reads
  helpers.py   per-value helpers for the rarer tests
  program.py   the batch's generated loop: coercion (exactly coerce_record's) and tests
  result.py    quarantine split and the GE-style, capped result

Defaults first: every declared column must convert to its type, the declaration's
required_fields are required and its non_negative_fields non-negative. The request's
seed-style lists and `rules` come on top; a rule with the same name and arguments as an
earlier one replaces it (so `{"rule": "non_negative", "field": "spend", "severity":
"warn"}` turns that default into a warning).

Semantics of `mostly` and `severity`:
  - A record failing a `fail` rule is always quarantined (with all its issues, warnings
    included), whatever `mostly` says: a record known to be wrong is never stored.
  - `mostly` decides whether the rule succeeds: at least that share of the batch's records
    must pass it. `validation_passed` is false when any `fail` rule does not succeed.
  - A `warn` rule never removes a record; it is reported in the result only.
  - A value that cannot become its declared column's type cannot be stored, so that
    check is always `fail` (a `warn` on it is refused when compiling).
  - A batch-level rule (row_count) has no failing records: it only decides success.
  - on_invalid "reject_batch" rejects the whole batch exactly when validation did not pass
    (`result["batch_rejected"]`, `rejection_message`); "quarantine" lets the valid
    records go on.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from tasks.datatypes import DataType
from tasks.stage import StageOutput
from tasks.validation.catalogue import FORMS, RULE_NAMES
from tasks.validation.compile import CompiledRules, compile_rules, on_invalid_policy
from tasks.validation.program import Program, choose_layout
from tasks.validation.result import outcomes, split, summarise
from tasks.validation.spec import ON_INVALID, QUARANTINE, REJECT_BATCH, RuleSpecError

__all__ = [
    "FORMS", "ON_INVALID", "QUARANTINE", "REJECT_BATCH", "RULE_NAMES", "CompiledRules",
    "RuleSpecError", "compile_rules", "on_invalid_policy", "rejection_message", "validate",
]


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """A batch allocates hundreds of thousands of acyclic dicts and lists; each full
    collection they trigger rescans the whole heap (the input batch included) and costs
    more than the checks. Nothing here makes cycles, so collection waits until the end."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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
    with _cyclic_gc_paused():
        layout = choose_layout(records, data_type.all_columns)
        run = Program(list(compiled.rules), data_type, layout, now).run(records)
        valid, rejected = split(records, run)
        evaluated = outcomes(run, len(records))
    return StageOutput(
        records=valid,
        rejected=rejected,
        records_in=len(records),
        result=summarise(evaluated, len(records), len(valid), len(rejected),
                         compiled.on_invalid),
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
