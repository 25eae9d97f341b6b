"""The rule catalogue: each rule's written form and the builder that compiles it.

A builder reads one rule object through RuleArgs (which refuses bad or unknown
arguments) and returns one compiled Rule per field it names, whose Test the code
generator (program.py) turns into code. Values given in a rule (bounds, allowed values)
are converted once here, to the field's canonical type.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from tasks import jsontext
from tasks.coerce import CONVERTERS, CoercionError
from tasks.datatypes import (
    BOOLEAN,
    DATE,
    DATETIME,
    DECIMAL,
    EXTRA_COLUMN,
    INTEGER,
    JSON,
    TEXT,
    DataType,
)
from tasks.validation import helpers
from tasks.validation.model import (
    ALLOWED,
    BOUNDS,
    CALL,
    COERCION,
    COMPARE,
    FORBIDDEN,
    FRESHNESS,
    LENGTH,
    NOT_NULL,
    REGEX,
    REQUIRED,
    ROW_COUNT,
    UNIQUE,
    Rule,
    Test,
)
from tasks.validation.spec import WARN, RuleArgs

# Type names of the `type` rule, and the column kind each one converts to.
TYPES: dict[str, str] = {
    "integer": INTEGER, "number": DECIMAL, "string": TEXT,
    "boolean": BOOLEAN, "date": DATE, "datetime": DATETIME,
}
TYPE_NAMES: dict[str, str] = {kind: name for name, kind in TYPES.items()} | {JSON: "object"}
# A requested type that a declared column's coercion already enforces: the rule and the
# column's default type check are then one and the same rule.
COVERED_BY: dict[str, frozenset[str]] = {
    "integer": frozenset({INTEGER}), "number": frozenset({INTEGER, DECIMAL}),
    "string": frozenset({TEXT}), "boolean": frozenset({BOOLEAN}),
    "date": frozenset({DATE}), "datetime": frozenset({DATETIME}),
}
_ORDERED = (INTEGER, DECIMAL, DATE, DATETIME)
# Kinds that can be compared with each other.
_FAMILY = {INTEGER: "number", DECIMAL: "number", DATE: "date", DATETIME: "date",
           TEXT: "string", BOOLEAN: "boolean"}

_FIELDS = '"field": <name> | "fields": [<name>, ...]'
FORMS: dict[str, str] = {
    "required": '{"rule": "required", ' + _FIELDS + '}: present with a non-null, non-blank value',
    "not_null": '{"rule": "not_null", ' + _FIELDS + '}: when present, not null or blank',
    "forbidden": '{"rule": "forbidden", ' + _FIELDS + '}: absent or null',
    "type": '{"rule": "type", ' + _FIELDS + ', "type": "integer" | "number" | "string" | '
            '"boolean" | "date" | "datetime"}',
    "range": '{"rule": "range", "field": <name>, "min"?: <number or date>, '
             '"max"?: <number or date>, "strict_min"?: <bool>, "strict_max"?: <bool>, '
             '"type"?: "number" | "integer" | "date" | "datetime" (undeclared fields only, '
             'default "number")}: at least one of min, max',
    "non_negative": '{"rule": "non_negative", ' + _FIELDS + '}',
    "allowed_values": '{"rule": "allowed_values", "field": <name>, "values": [<value>, ...]}',
    "regex": '{"rule": "regex", "field": <name>, "pattern": <regular expression, found '
             'anywhere in the value; anchor it with ^...$>}',
    "length": '{"rule": "length", "field": <name>, "min"?: <int>, "max"?: <int>}: '
              'at least one of min, max',
    "unique": '{"rule": "unique", ' + _FIELDS + '}: no two records share the value(s)',
    "compare": '{"rule": "compare", "left": <name>, "op": "<" | "<=" | ">" | ">=" | "==" | '
               '"!=", "right": <name>, "type"?: <type name, to read undeclared fields as>}',
    "row_count": '{"rule": "row_count", "min"?: <int>, "max"?: <int>}: records in the batch',
    "freshness": '{"rule": "freshness", "field"?: <date field, default the data type\'s '
                 'date column>, "max_age_days"?: <int>, "allow_future"?: <bool, default '
                 'false>}',
}
RULE_NAMES = tuple(FORMS)

Builder = Callable[[RuleArgs, DataType], list[Rule]]


def rule_key(name: str, args: dict[str, Any]) -> tuple[str, bytes]:
    """Two rules with the same name and defining arguments are the same rule."""
    return name, jsontext.dumps(args, sort_keys=True)


def _make(a: RuleArgs, args: dict[str, Any], test: Test, describe: Callable[[Any], str],
          field: str | None, key: Any = None) -> Rule:
    return Rule(
        name=a.name, args=args, test=test, describe=describe, field=field,
        severity=a.severity(), mostly=a.mostly(),
        key=key if key is not None else rule_key(a.name, args),
    )


def _kind(data_type: DataType, field: str) -> str | None:
    """A field's declared kind; None for a field read from `extra`."""
    return data_type.all_columns.get(field) if field != EXTRA_COLUMN else None


def _per_field(kind: str, message: str) -> Builder:
    def build(a: RuleArgs, data_type: DataType) -> list[Rule]:
        return [
            _make(a, {"field": f}, Test(kind, (f,)),
                  lambda _v, f=f: message.format(field=f), f)
            for f in a.fields()
        ]
    return build


def _convert(a: RuleArgs, arg: str, kind: str, value: Any) -> Any:
    try:
        converted = CONVERTERS[kind](value)
    except (CoercionError, ValueError, OverflowError, OSError) as exc:
        raise a.error(f"{exc}", arg) from None
    if converted is None:
        raise a.error(f"must be a {TYPE_NAMES[kind]}", arg)
    return converted


def _read_kind(a: RuleArgs, data_type: DataType, field: str, allowed: tuple[str, ...],
               default: str) -> str:
    """The kind a rule reads `field` as: the declared one, or `type` for undeclared fields."""
    kind = _kind(data_type, field)
    if kind is None:
        return TYPES[a.choice("type", [TYPE_NAMES[k] for k in allowed], default)]
    if a.has("type"):
        raise a.error(f'"type" is only for undeclared fields; {field} is declared', "type")
    if kind not in allowed:
        raise a.error(f"{field} is a {TYPE_NAMES[kind]} field; this rule needs one of "
                      f"{', '.join(TYPE_NAMES[k] for k in allowed)}", "field")
    return kind


def _bound_text(low: Any, high: Any, strict_low: bool, strict_high: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if strict_low else '>='} {low}")
    if high is not None:
        parts.append(f"{'<' if strict_high else '<='} {high}")
    return " and ".join(parts)


def _range(a: RuleArgs, data_type: DataType) -> list[Rule]:
    field = a.field()
    assert field is not None
    kind = _read_kind(a, data_type, field, _ORDERED, "number")
    declared = _kind(data_type, field) is not None
    bound_kind = DECIMAL if kind in (INTEGER, DECIMAL) else kind
    given_low, given_high = a.get("min"), a.get("max")
    if given_low is None and given_high is None:
        raise a.error('give "min", "max" or both')
    low = None if given_low is None else _convert(a, "min", bound_kind, given_low)
    high = None if given_high is None else _convert(a, "max", bound_kind, given_high)
    if low is not None and high is not None and low > high:
        raise a.error("min is greater than max")
    strict_low, strict_high = a.boolean("strict_min", False), a.boolean("strict_max", False)
    args: dict[str, Any] = {"field": field}
    for name, value in (("min", given_low), ("max", given_high)):
        if value is not None:
            args[name] = value
    if strict_low or strict_high:
        args.update(strict_min=strict_low, strict_max=strict_high)
    if not declared:
        args["type"] = TYPE_NAMES[kind]
    bounds = _bound_text(low, high, strict_low, strict_high)
    describe = lambda v: f"{field} must be {bounds}, got {v}"  # noqa: E731
    return [_make(a, args, _bounds_test(field, low, high, strict_low, strict_high,
                                        None if declared else kind, describe),
                  describe, field)]


def _bounds_test(field: str, low: Any, high: Any, strict_low: bool, strict_high: bool,
                 convert_to: str | None, describe: Callable[[Any], str]) -> Test:
    """Inline bounds on a declared field; a helper converts an undeclared field first."""
    params = {"low": low, "high": high, "strict_low": strict_low, "strict_high": strict_high}
    if convert_to is None:
        return Test(BOUNDS, (field,), params)
    too_low = (lambda v: v <= low) if strict_low else (lambda v: v < low)
    too_high = (lambda v: v >= high) if strict_high else (lambda v: v > high)

    def inside(v: Any) -> bool:
        return not ((low is not None and too_low(v)) or (high is not None and too_high(v)))
    return Test(CALL, (field,), {"fn": helpers.converted(field, convert_to, inside, describe)})


def _non_negative(a: RuleArgs, data_type: DataType) -> list[Rule]:
    rules = []
    for field in a.fields():
        kind = _kind(data_type, field)
        if kind is not None and kind not in (INTEGER, DECIMAL):
            raise a.error(f"{field} is a {TYPE_NAMES[kind]} field, not a number", "field")
        describe = lambda v, f=field: f"{f} must not be negative, got {v}"  # noqa: E731
        test = _bounds_test(field, 0, None, False, False,
                            DECIMAL if kind is None else None, describe)
        rules.append(_make(a, {"field": field}, test, describe, field))
    return rules


def coercion_rule(field: str, kind: str) -> Rule:
    """The default type rule of a declared column: its values must convert to its kind."""
    type_name = TYPE_NAMES[kind]
    return Rule(
        name="type", args={"field": field, "type": type_name}, test=Test(COERCION, (field,)),
        describe=lambda _v: f"{field} must be a {type_name}", field=field, key=("type", field),
    )


def _type(a: RuleArgs, data_type: DataType) -> list[Rule]:
    fields = a.fields()
    type_name = a.choice("type", list(TYPES))
    rules = []
    for field in fields:
        kind = _kind(data_type, field)
        if kind in COVERED_BY[type_name]:
            # The column's own coercion: a value that fails it cannot be stored, so it
            # cannot be a mere warning.
            if a.severity() == WARN:
                raise a.error(f"{field} is a {TYPE_NAMES[kind]} column: a value that is not "
                              "one cannot be stored, so this rule cannot be a warning",
                              "severity")
            rules.append(replace(coercion_rule(field, kind), severity=a.severity(),
                                 mostly=a.mostly()))
            continue
        describe = lambda _v, f=field: f"{f} must be a {type_name}"  # noqa: E731
        test = Test(CALL, (field,), {"fn": helpers.convertible(field, TYPES[type_name])})
        rules.append(_make(a, {"field": field, "type": type_name}, test, describe, field,
                           key=("type", field, type_name)))
    return rules


def _allowed_values(a: RuleArgs, data_type: DataType) -> list[Rule]:
    field = a.field()
    assert field is not None
    given = a.get("values")
    if not isinstance(given, list) or not given:
        raise a.error("must be a non-empty list of values", "values")
    kind = _kind(data_type, field)
    shown = ", ".join(map(str, given[:10])) + (", ..." if len(given) > 10 else "")
    describe = lambda v: f"{field} must be one of {shown}, got {v}"  # noqa: E731
    if kind is None or kind == JSON:
        # As they came: a value of `extra` may be unhashable, so a helper tests it.
        if not all(isinstance(v, str | int | float | bool) for v in given if v is not None):
            raise a.error("must be a list of strings, numbers or booleans", "values")
        test = Test(CALL, (field,), {"fn": helpers.member(frozenset(given), describe)})
    else:
        allowed = frozenset(_convert(a, "values", kind, v) for v in given if v is not None)
        test = Test(ALLOWED, (field,), {"allowed": allowed})
    return [_make(a, {"field": field, "values": given}, test, describe, field)]


def _regex(a: RuleArgs, data_type: DataType) -> list[Rule]:
    field = a.field()
    assert field is not None
    pattern = a.get("pattern")
    if not isinstance(pattern, str):
        raise a.error("must be a regular expression (a string)", "pattern")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise a.error(f"is not a valid regular expression: {exc}", "pattern") from None
    describe = lambda v: f"{field} does not match {pattern}: {v!r}"  # noqa: E731
    return [_make(a, {"field": field, "pattern": pattern},
                  Test(REGEX, (field,), {"search": compiled.search}), describe, field)]


def _bounds(a: RuleArgs) -> tuple[int | None, int | None]:
    low, high = a.integer("min"), a.integer("max")
    if low is None and high is None:
        raise a.error('give "min", "max" or both')
    if low is not None and high is not None and low > high:
        raise a.error("min is greater than max")
    return low, high


def _length(a: RuleArgs, data_type: DataType) -> list[Rule]:
    field = a.field()
    assert field is not None
    low, high = _bounds(a)
    args = {"field": field, **({"min": low} if low is not None else {}),
            **({"max": high} if high is not None else {})}
    bounds = _bound_text(low, high, False, False)
    describe = lambda v: f"length of {field} must be {bounds}, got {v!r}"  # noqa: E731
    test = Test(LENGTH, (field,), {"low": 0 if low is None else low,
                                   "high": float("inf") if high is None else high})
    return [_make(a, args, test, describe, field)]


def _unique(a: RuleArgs, data_type: DataType) -> list[Rule]:
    fields = a.fields()
    args = {"field": fields[0]} if a.has("field") else {"fields": fields}
    names = ", ".join(fields)

    def describe(key: dict[str, Any]) -> str:
        shown = ", ".join(helpers.as_text(v) for v in key.values())
        return f"({names}) = ({shown}) appears more than once in the batch"

    return [_make(a, args, Test(UNIQUE, tuple(fields)), describe, ",".join(fields))]


def _compare(a: RuleArgs, data_type: DataType) -> list[Rule]:
    left, right = a.field("left"), a.field("right")
    assert left is not None and right is not None
    op = a.choice("op", list(helpers.OPERATORS))
    left_kind, right_kind = _kind(data_type, left), _kind(data_type, right)
    given_type = None
    if a.has("type"):
        if left_kind is not None and right_kind is not None:
            raise a.error('"type" is only for undeclared fields; both are declared', "type")
        given_type = TYPES[a.choice("type", list(TYPES))]
    fallback = given_type or left_kind or right_kind
    if fallback is None:
        raise a.error(f'{left} and {right} are not declared: give "type" to read them as')
    kinds = (left_kind or fallback, right_kind or fallback)
    if JSON in kinds or _FAMILY[kinds[0]] != _FAMILY[kinds[1]]:
        raise a.error(f"cannot compare {left} ({TYPE_NAMES[kinds[0]]}) with {right} "
                      f"({TYPE_NAMES[kinds[1]]})")
    args = {"left": left, "op": op, "right": right}
    if given_type:
        args["type"] = TYPE_NAMES[given_type]
    describe = lambda v: f"{left} ({v[left]}) must be {op} {right} ({v[right]})"  # noqa: E731
    as_dates = set(kinds) == {DATE, DATETIME}
    if left_kind and right_kind and not as_dates:
        test = Test(COMPARE, (left, right), {"op": op})
    else:
        fn = helpers.compare(left, op, right, (None if left_kind else kinds[0],
                                               None if right_kind else kinds[1]),
                             as_dates, describe)
        test = Test(CALL, (left, right), {"fn": fn})
    return [_make(a, args, test, describe, left)]


def _row_count(a: RuleArgs, data_type: DataType) -> list[Rule]:
    if a.has("mostly"):
        raise a.error("does not apply to a batch-level rule", "mostly")
    low, high = _bounds(a)
    args = {**({"min": low} if low is not None else {}),
            **({"max": high} if high is not None else {})}
    bounds = _bound_text(low, high, False, False)
    describe = lambda n: f"the batch has {n} records; it must have {bounds}"  # noqa: E731
    return [_make(a, args, Test(ROW_COUNT, (), {"low": low, "high": high}), describe, None)]


def _freshness(a: RuleArgs, data_type: DataType) -> list[Rule]:
    field = a.field(required=False) or data_type.date_column
    if field is None:
        raise a.error(f"{data_type.name} has no date column: give the field", "field")
    kind = _read_kind(a, data_type, field, (DATE, DATETIME), "date")
    max_age = a.integer("max_age_days")
    allow_future = a.boolean("allow_future", False)
    if max_age is None and allow_future:
        raise a.error('nothing to check: give "max_age_days" or leave out "allow_future"')
    args: dict[str, Any] = {"field": field}
    if max_age is not None:
        args["max_age_days"] = max_age
    args["allow_future"] = allow_future
    if _kind(data_type, field) is None:
        args["type"] = TYPE_NAMES[kind]
    describe = lambda v: f"{field} is not fresh: {v}"  # noqa: E731
    test = Test(FRESHNESS, (field,), {
        "max_age_days": max_age, "allow_future": allow_future, "kind": kind,
        "declared": _kind(data_type, field) is not None,
    })
    return [_make(a, args, test, describe, field)]


BUILDERS: dict[str, Builder] = {
    "required": _per_field(REQUIRED, "{field} is required"),
    "not_null": _per_field(NOT_NULL, "{field} must not be null"),
    "forbidden": _per_field(FORBIDDEN, "{field} is not allowed"),
    "type": _type,
    "range": _range,
    "non_negative": _non_negative,
    "allowed_values": _allowed_values,
    "regex": _regex,
    "length": _length,
    "unique": _unique,
    "compare": _compare,
    "row_count": _row_count,
    "freshness": _freshness,
}
assert BUILDERS.keys() == FORMS.keys()
