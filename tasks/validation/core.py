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
from collections.abc import Container, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from tasks.datatypes import DataType
from tasks.stage import StageOutput
from tasks.storage.quarantine import Rejected
from tasks.validation.catalogue import FORMS, RULE_NAMES
from tasks.validation.compile import CompiledRules, compile_rules, on_invalid_policy
from tasks.validation.model import UNIQUE
from tasks.validation.program import Program, choose_layout
from tasks.validation.result import Tally, split, summarise
from tasks.validation.spec import ON_INVALID, QUARANTINE, REJECT_BATCH, RuleSpecError

__all__ = [
    "FORMS", "ON_INVALID", "QUARANTINE", "REJECT_BATCH", "RULE_NAMES", "CompiledRules",
    "RuleSpecError", "Validation", "compile_rules", "on_invalid_policy", "rejection_message",
    "validate",
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


class Validation:
    """One batch's validation, fed a chunk at a time (a whole batch is one chunk).

    Each record is checked once, in `check`; the result adds up every chunk. For a batch
    that spans chunks, `unique` rules need its keys first: `keys` gives a chunk's, and
    `check` then takes, per unique rule, the indices whose key repeats in the batch.
    """

    def __init__(self, data_type: DataType,
                 rules: Mapping[str, Any] | CompiledRules | None = None, *,
                 now: datetime | None = None) -> None:
        self.compiled = (rules if isinstance(rules, CompiledRules)
                         else compile_rules(data_type, rules))
        self.data_type = data_type
        now = datetime.now(UTC) if now is None else now
        self.now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
        self.has_unique = any(r.test.kind == UNIQUE for r in self.compiled.rules)
        self._program: Program | None = None
        self._tally = Tally()
        self.size = self.valid_count = self.invalid_count = 0

    def _program_for(self, records: list[Any]) -> Program:
        # One program for the batch, generated for the first chunk's layout of keys.
        if self._program is None:
            layout = choose_layout(records, self.data_type.all_columns)
            self._program = Program(list(self.compiled.rules), self.data_type, layout, self.now)
        return self._program

    def keys(self, records: list[Any]) -> dict[int, list[tuple[int, Any]]]:
        """Per unique rule (by position), (index, key) of the records it compares."""
        with _cyclic_gc_paused():
            return self._program_for(records).run(records, repeated={}).keys

    def check(self, records: list[Any], offset: int = 0,
              repeated: Mapping[int, Container[int]] | None = None,
              ) -> tuple[list[dict[str, Any]], list[Rejected]]:
        """The chunk's valid records (canonical) and its refused ones (indices within the
        chunk); `offset` is the chunk's first record's position in the batch."""
        with _cyclic_gc_paused():
            run = self._program_for(records).run(records, repeated)
            valid, rejected = split(records, run)
            self._tally.add(run, offset)
        self.size += len(records)
        self.valid_count += len(valid)
        self.invalid_count += len(rejected)
        return valid, rejected

    def result(self) -> dict[str, Any]:
        rules = self._program.rules if self._program else list(self.compiled.rules)
        return summarise(self._tally.evaluated(rules, self.size), self.size,
                         self.valid_count, self.invalid_count, self.compiled.on_invalid)


def validate(
    records: list[dict[str, Any]],
    data_type: DataType,
    rules: Mapping[str, Any] | CompiledRules | None = None,
    *,
    now: datetime | None = None,
) -> StageOutput:
    """Coerce and check a batch; `now` (aware, default the current UTC time) is for freshness."""
    validation = Validation(data_type, rules, now=now)
    valid, rejected = validation.check(records)
    return StageOutput(records=valid, rejected=rejected, records_in=len(records),
                       result=validation.result())


def rejection_message(result: dict[str, Any]) -> str | None:
    """Why the whole batch must be refused (on_invalid reject_batch and validation did not
    pass), or None when its valid records may go on."""
    if not result.get("batch_rejected"):
        return None
    failed = [r["rule"] + (f" {r['field']}" if r.get("field") else "")
              for r in result["rules"] if r["severity"] == "fail" and not r["success"]]
    return (f"validation did not pass ({', '.join(failed)}); {result['invalid_count']} of "
            f"{result['records_count']} records are invalid and on_invalid is reject_batch: "
            "nothing was stored")
