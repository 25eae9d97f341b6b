"""Compiling `validation_rules` once per batch: the data type's defaults, then the
request's seed-style lists, then its `rules`; a later rule with the same key replaces an
earlier one (so a request can, say, turn a default into a warning)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from tasks.datatypes import TEXT, DataType
from tasks.validation.catalogue import BUILDERS, FORMS, RULE_NAMES, coercion_rule
from tasks.validation.model import DATA_TYPE, Rule
from tasks.validation.spec import COMMON_FORM, ON_INVALID, QUARANTINE, RuleArgs, RuleSpecError

TOP_LEVEL_FORM = (
    '{"required_fields"?: [<name>, ...], "numeric_fields"?: [<name>, ...], '
    '"forbidden_fields"?: [<name>, ...], "on_invalid"?: "quarantine" | "reject_batch", '
    '"rules"?: [<rule>, ...]}; every rule also takes ' + COMMON_FORM
)
# Seed-style lists and the rule each name in them stands for.
FIELD_LISTS = {
    "required_fields": ("required", {}),
    "numeric_fields": ("type", {"type": "number"}),
    "forbidden_fields": ("forbidden", {}),
}
TOP_LEVEL_KEYS = (*FIELD_LISTS, "on_invalid", "rules")


@dataclass(frozen=True)
class CompiledRules:
    data_type: DataType
    rules: tuple[Rule, ...]
    on_invalid: str


def _error(message: str, field: str, **extra: Any) -> RuleSpecError:
    return RuleSpecError(message, {"field": field, "expected": TOP_LEVEL_FORM,
                                   "known_rules": list(RULE_NAMES), **extra})


def on_invalid_policy(rules: Mapping[str, Any] | None) -> str:
    """The batch's policy for invalid records: quarantine (default) or reject_batch."""
    policy = (rules or {}).get("on_invalid", QUARANTINE)
    if policy not in ON_INVALID:
        raise _error(f"validation_rules.on_invalid must be one of {', '.join(ON_INVALID)}, "
                     f"not {policy!r}", "validation_rules.on_invalid", allowed=list(ON_INVALID))
    return policy


def _build(spec: Mapping[str, Any], data_type: DataType, path: str) -> list[Rule]:
    name = spec.get("rule")
    if not isinstance(name, str) or name not in BUILDERS:
        raise RuleSpecError(
            f"{path}: unknown rule {name!r}; known rules: {', '.join(RULE_NAMES)}",
            {"field": f"{path}.rule", "problem": "unknown rule",
             "expected": '{"rule": <one of known_rules>, <its arguments>, ' + COMMON_FORM
                         + "}",
             "known_rules": list(RULE_NAMES), "forms": FORMS},
        )
    args = RuleArgs(spec, name, path, f"{FORMS[name]}; also {COMMON_FORM}", RULE_NAMES)
    rules = BUILDERS[name](args, data_type)
    args.severity()
    args.mostly()
    args.finish()
    return rules


KEY_TEXT_MAX = 256  # characters of each text column of a natural key

# Data types are declarations of the code: their rules are built once per process (for a
# one-record job, building them took a tenth of the validate stage).
_DEFAULT_RULES: dict[str, tuple[DataType, tuple[Rule, ...]]] = {}


def default_rules(data_type: DataType) -> tuple[Rule, ...]:
    """The declaration's rules: every declared column's type, required and non-negative,
    and the natural key's text no longer than its unique index can hold."""
    cached = _DEFAULT_RULES.get(data_type.name)
    if cached is not None and cached[0] is data_type:  # the very declaration they came from
        return cached[1]
    rules = [coercion_rule(field, kind) for field, kind in data_type.columns.items()]
    for name, fields in (("required", data_type.required_fields),
                         ("non_negative", data_type.non_negative_fields)):
        if fields:
            rules += _build({"rule": name, "fields": list(fields)}, data_type, name)
    # A longer key fails the store for the whole batch: a btree index row holds 2.7 kB.
    for field in data_type.natural_key:
        if data_type.columns.get(field) == TEXT:
            rules += _build({"rule": "length", "field": field, "max": KEY_TEXT_MAX},
                            data_type, "length")
    built = tuple(replace(rule, origin=DATA_TYPE) for rule in rules)
    _DEFAULT_RULES[data_type.name] = (data_type, built)
    return built


def _field_list(rules: Mapping[str, Any], key: str) -> list[str]:
    value = rules[key]
    if not isinstance(value, list) or not all(v.__class__ is str and v for v in value):
        raise _error(f"validation_rules.{key} must be a list of field names",
                     f"validation_rules.{key}")
    return value


def compile_rules(data_type: DataType, rules: Mapping[str, Any] | None) -> CompiledRules:
    """Check and compile `validation_rules`; raises RuleSpecError naming what is wrong."""
    rules = {} if rules is None else rules
    if not isinstance(rules, Mapping):
        raise _error("validation_rules must be an object", "validation_rules")
    unknown = sorted(set(rules) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise _error(f"validation_rules: unknown key(s) {', '.join(map(repr, unknown))}; "
                     f"known: {', '.join(TOP_LEVEL_KEYS)}", f"validation_rules.{unknown[0]}")
    on_invalid = on_invalid_policy(rules)

    compiled: dict[Hashable, Rule] = {}

    def add(new: Iterable[Rule]) -> None:
        for rule in new:
            compiled[rule.key] = rule  # a replacement keeps the place of what it replaces

    add(default_rules(data_type))
    for key, (name, extra) in FIELD_LISTS.items():
        if key in rules:
            fields = _field_list(rules, key)
            if fields:
                add(_build({"rule": name, "fields": list(dict.fromkeys(fields)), **extra},
                           data_type, f"validation_rules.{key}"))
    specs = rules.get("rules", [])
    if not isinstance(specs, list):
        raise _error("validation_rules.rules must be a list of rule objects",
                     "validation_rules.rules")
    for index, spec in enumerate(specs):
        path = f"validation_rules.rules[{index}]"
        if not isinstance(spec, Mapping):
            raise _error(f"{path} must be an object like "
                         '{"rule": "range", "field": "spend", "min": 0}', path)
        add(_build(spec, data_type, path))
    return CompiledRules(data_type, tuple(compiled.values()), on_invalid)
