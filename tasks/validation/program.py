"""One batch's validator: a loop over the records, generated as Python source once per
batch from the compiled rules and the shape of the batch's records.

Why generate code: a 100,000-record batch does not fit in the CPU cache, so what costs
is touching each record; converting and checking a record in one visit, with the
conversions and tests written out inline, runs several times faster than one pass per
field or a function call per field and rule (see bench/bench_validation.py).

Each record takes one of two paths:
  fast  the record is a dict with exactly the batch's usual keys (the "layout") and
        every value converts by an inline fast path; the canonical record is built in
        one dict display. The fast paths only accept values for which they give what
        tasks.coerce gives (tests/unit/test_validation_coercion.py checks it).
  slow  anything else (a missing or unknown key, a value that does not convert, a null
        where the fast path wants a value) is coerced by tasks.coerce.coerce_record
        itself, so odd values get exactly its value or error message.
Both paths then run the same generated checks on the canonical values.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import islice
from types import CodeType
from typing import Any

from tasks import jsontext
from tasks.coerce import (
    CONVERTERS,
    INTEGER_MAX,
    INTEGER_MIN,
    CoercionError,
    FieldError,
    coerce_record,
    in_decimal_range,
)
from tasks.datatypes import (
    BOOLEAN,
    DATE,
    DATETIME,
    DECIMAL,
    EXTRA_COLUMN,
    INTEGER,
    TEXT,
    DataType,
)
from tasks.validation import helpers
from tasks.validation.catalogue import coercion_rule
from tasks.validation.model import (
    ALLOWED,
    BOUNDS,
    CALL,
    COERCION,
    COMPARE,
    DATA_TYPE,
    FAIL,
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

LAYOUT_SAMPLE = 64
# Counts are mostly small: share their Decimals instead of making one per record.
SMALL_DEC = tuple(Decimal(n) for n in range(4096))
_EMPTY: Mapping[str, Any] = {}

OBJECT_RULE = Rule(
    name="object", args={}, test=Test(COERCION), field=None, origin=DATA_TYPE,
    describe=lambda _v: "record is not a JSON object", key=("object",),
)


class _Slow(Exception):
    """The fast path does not handle this record."""


# What the fast path may raise; every one of them sends the record to the slow path.
SLOW_ERRORS = (
    _Slow, LookupError, TypeError, ValueError, ArithmeticError, AttributeError, OSError,
)
# What tasks.coerce lets escape for some out-of-range values instead of CoercionError
# (datetime.fromtimestamp of a huge number): the value is reported as a type error.
_ESCAPING = (OverflowError, OSError, ValueError)

# (rule position, record index, value) or (..., message) for one failure.
Failure = tuple[Any, ...]


@dataclass
class Run:
    """What the generated loop found in a batch."""

    records: list[dict[str, Any] | None]  # canonical record per input (None: not an object)
    failures: list[Failure]
    invalid: set[int]
    rules: list[Rule]  # the program's rules, with type rules added for other columns seen
    seen: set[str] = field(default_factory=set)
    # Per unique rule (by position): (index, key) of each record whose key is compared.
    keys: dict[int, list[tuple[int, Any]]] = field(default_factory=dict)


# Compiled generated sources: the same rules over the same layout give the same source
# (values the code needs live in its namespace), and compiling is most of a small batch's
# validation time.
_CODE_CACHE_SIZE = 256
_code_cache: dict[str, CodeType] = {}


def _compiled(source: str) -> CodeType:
    code = _code_cache.get(source)
    if code is None:
        if len(_code_cache) >= _CODE_CACHE_SIZE:
            _code_cache.pop(next(iter(_code_cache)))  # the oldest
        code = _code_cache[source] = compile(source, "<validation program>", "exec")
    return code


def choose_layout(records: list[Any], kinds: Mapping[str, str]) -> tuple[str, ...] | None:
    """The most common key set among the first records, in the order of the first record
    having it; None when there is no usable one."""
    sample = [tuple(r) for r in islice(records, LAYOUT_SAMPLE) if r.__class__ is dict]
    if not sample:
        return None
    common, _ = Counter(frozenset(keys) for keys in sample).most_common(1)[0]
    layout = next(keys for keys in sample if frozenset(keys) == common)
    if not all(key.__class__ is str for key in layout):
        return None  # keys become literals in the generated code: plain strings only
    unknown = [k for k in layout if k not in kinds]
    if unknown and EXTRA_COLUMN in layout:
        return None  # coerce_record merges the two: leave it to the slow path
    return layout


def coerce_safely(record: Mapping[str, Any], data_type: DataType,
                  kinds: Mapping[str, str]) -> tuple[dict[str, Any], list[FieldError]]:
    """coerce_record, except that a value making it crash is a type error of its field."""
    try:
        return coerce_record(record, data_type, kinds)
    except _ESCAPING:
        pass
    broken: dict[str, tuple[Any, str]] = {}
    for name, value in record.items():
        kind = kinds.get(name)
        if kind is None or name == EXTRA_COLUMN:
            continue
        try:
            CONVERTERS[kind](value)
        except CoercionError:
            pass
        except _ESCAPING as exc:
            broken[name] = (value, f"cannot convert {value!r}: {exc}")
    rest = {k: v for k, v in record.items() if k not in broken}
    out, errors = coerce_record(rest, data_type, kinds)
    for name, (value, message) in broken.items():
        out[name] = value
        errors.append((name, value, message))
    return out, errors


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return jsontext.dumps(value, sort_keys=True)
    return value


class Program:
    """The generated validator of one batch: `run(records)` returns a Run."""

    def __init__(self, rules: list[Rule], data_type: DataType,
                 layout: tuple[str, ...] | None, now: datetime) -> None:
        self.rules = list(rules)
        self.data_type = data_type
        self.kinds = data_type.all_columns
        self.layout = layout
        self.now = now
        self._type_rule = {
            r.test.fields[0]: j for j, r in enumerate(self.rules)
            if r.test.kind == COERCION and r.test.fields
        }
        self._object_rule: int | None = None
        self.namespace: dict[str, Any] = {
            "SLOW": _Slow, "SLOW_ERRORS": SLOW_ERRORS, "DEC": Decimal,
            "TXT": helpers.as_text, "EMPTY": _EMPTY, "BLANK": _blank,
            "NOERR": frozenset(), "IN_RANGE": in_decimal_range,
            "INT_MIN": INTEGER_MIN, "INT_MAX": INTEGER_MAX,
        }
        for kind, convert in CONVERTERS.items():
            self.namespace[f"CV_{kind}"] = convert
        dates: dict[str, date] = {}

        def parse_date(value: Any) -> Any:
            # Only the plain YYYY-MM-DD form: no spaces can hide in 10 accepted characters,
            # so this is what the reference's strip-then-fromisoformat gives.
            if value.__class__ is str and len(value) == 10:
                parsed = dates[value] = date.fromisoformat(value)
                return parsed
            return CONVERTERS[DATE](value)

        self.namespace.update(DATES=dates, PARSE_DATE=parse_date, SMALL_DEC=SMALL_DEC)
        self.declared, self.undeclared = self._variables()
        self.source = self._generate()
        exec(_compiled(self.source), self.namespace)

    # -- variables -----------------------------------------------------------------------

    def _is_declared(self, name: str) -> bool:
        return name != EXTRA_COLUMN and name in self.kinds

    def _variables(self) -> tuple[dict[str, str], dict[str, str]]:
        """Local variable names: c<n> for declared fields, u<n> for fields in `extra`."""
        names = [k for k in self.layout or () if self._is_declared(k)]
        used = [f for r in self.rules for f in r.test.fields]
        names += [f for f in dict.fromkeys(used) if self._is_declared(f) and f not in names]
        undeclared = [f for f in dict.fromkeys(used) if not self._is_declared(f)]
        return ({f: f"c{n}" for n, f in enumerate(names)},
                {f: f"u{n}" for n, f in enumerate(undeclared)})

    def _var(self, name: str) -> str:
        return self.declared.get(name) or self.undeclared[name]

    # -- generation ----------------------------------------------------------------------

    def _generate(self) -> str:
        uniques = [j for j, r in enumerate(self.rules) if r.test.kind == UNIQUE]
        lines = [
            "def run(records, failures, slow):",
            "    F = failures.append",
            "    outs = []",
            "    O = outs.append",
            "    invalid = []",
            "    BAD = invalid.append",
            *(f"    K{j} = []" for j in uniques),
            "    for i, r in enumerate(records):",
            "        try:",
            *("            " + line for line in self._fast_path()),
            "        except SLOW_ERRORS:",
            "            s = slow(i, r)",
            "            if s is None:",
            "                O(None)",
            *(f"                K{j}.append(None)" for j in uniques),
            "                continue",
            "            o, values, errored = s",
        ]
        if self.declared:
            lines.append(f"            {', '.join(self.declared.values())}, = values")
        lines.append("            f = bool(errored)")
        if self.undeclared:
            lines.append("        ex = o.get('extra') or EMPTY")
            lines += [f"        {v} = ex.get({f!r})" for f, v in self.undeclared.items()]
        for j, rule in enumerate(self.rules):
            lines += ["        " + line for line in self._check(j, rule)]
        lines += [
            "        O(o)",
            "        if f:",
            "            BAD(i)",
            "    return outs, invalid, {" + ", ".join(f"{j}: K{j}" for j in uniques) + "}",
        ]
        return "\n".join(lines) + "\n"

    def _fast_path(self) -> list[str]:
        if self.layout is None:
            return ["raise SLOW"]
        layout = self.layout
        lines = [f"if r.__class__ is not dict or len(r) != {len(layout)}:", "    raise SLOW"]
        display = []
        extra_items = []
        for n, key in enumerate(layout):
            lines.append(f"x{n} = r[{key!r}]")
            if self._is_declared(key):
                var = self.declared[key]
                lines += self._convert(var, f"x{n}", self.kinds[key])
                display.append(f"{key!r}: {var}")
            elif key == EXTRA_COLUMN:
                # coerce_record drops a null or empty `extra` and refuses a non-object.
                lines += [f"if x{n}.__class__ is not dict or not x{n}:", "    raise SLOW"]
                display.append(f"'extra': {{**x{n}}}")
            else:
                extra_items.append(f"{key!r}: x{n}")
        if extra_items:
            display.append("'extra': {" + ", ".join(extra_items) + "}")
        lines += [f"{var} = None" for f, var in self.declared.items() if f not in layout]
        lines += [
            "o = {" + ", ".join(display) + "}",
            "errored = NOERR",
            "f = False",
        ]
        return lines

    @staticmethod
    def _convert(var: str, x: str, kind: str) -> list[str]:
        """Inline conversion with coerce.py's result; anything else calls the reference
        converter, whose CoercionError sends the record to the slow path."""
        ref = f"CV_{kind}({x})"
        if kind == TEXT:
            return [f"{var} = ({x}.strip() or None) if {x}.__class__ is str "
                    f"else str({x}) if {x}.__class__ is int else {ref}"]
        if kind == INTEGER:
            return [f"{var} = {x} if {x}.__class__ is int and INT_MIN <= {x} <= INT_MAX "
                    f"else {ref}"]
        if kind == BOOLEAN:
            return [f"{var} = {x} if {x}.__class__ is bool else {ref}"]
        if kind == DATE:
            # A batch has few distinct dates: parse each once (dates are immutable).
            return [f"{var} = DATES.get({x}) or PARSE_DATE({x})"]
        if kind == DECIMAL:
            # Decimal(" 1.5 ") == Decimal("1.5"), as the reference's strip-then-parse;
            # NaN and Infinity parse, but the reference refuses them: slow path.
            # Out of range (coerce.in_decimal_range) goes the slow path too.
            return [
                f"if {x}.__class__ is str:",
                f"    {var} = DEC({x})",
                f"    if not ({var}.is_finite() and IN_RANGE({var})):",
                "        raise SLOW",
                f"elif {x}.__class__ is int:",
                f"    if 0 <= {x} < {len(SMALL_DEC)}:",
                f"        {var} = SMALL_DEC[{x}]",
                "    else:",
                f"        {var} = DEC({x})",
                f"        if not IN_RANGE({var}):",
                "            raise SLOW",
                f"elif {x}.__class__ is float:",
                f"    {var} = DEC(repr({x}))",
                f"    if not ({var}.is_finite() and IN_RANGE({var})):",
                "        raise SLOW",
                "else:",
                f"    {var} = {ref}",
            ]
        return [f"{var} = {ref}"]

    def _check(self, j: int, rule: Rule) -> list[str]:
        test = rule.test
        kind = test.kind
        mark = "; f = True" if rule.severity == FAIL else ""
        if kind in (COERCION, ROW_COUNT):
            return []
        if kind == UNIQUE:
            values = [self._var(f) for f in test.fields]
            key = values[0] if len(values) == 1 else "(" + ", ".join(values) + ")"
            return [f"K{j}.append({key})"]
        name = test.fields[0]
        v = self._var(name)
        declared = self._is_declared(name)
        raw = f"r.get({name!r})" if declared else v
        p = test.params
        # A declared text column turns blanks into None; a value in `extra` came as it was.
        null = f"{v} is None" if declared else f"BLANK({v})"
        if kind == REQUIRED:
            cond = null + (f" and {name!r} not in errored" if declared else "")
            return [f"if {cond}: F(({j}, i, {raw})){mark}"]
        if kind == NOT_NULL:
            where = "o" if declared else "ex"
            cond = f"{null} and {name!r} in {where}"
            cond += f" and {name!r} not in errored" if declared else ""
            return [f"if {cond}: F(({j}, i, {raw})){mark}"]
        if kind == FORBIDDEN:
            cond = f"{v} is not None" + (f" or {name!r} in errored" if declared else "")
            return [f"if {cond}: F(({j}, i, {raw})){mark}"]
        if kind == BOUNDS:
            parts = []
            if p["low"] is not None:
                self.namespace[f"L{j}"] = p["low"]
                parts.append(f"{v} {'<=' if p['strict_low'] else '<'} L{j}")
            if p["high"] is not None:
                self.namespace[f"H{j}"] = p["high"]
                parts.append(f"{v} {'>=' if p['strict_high'] else '>'} H{j}")
            return [f"if {v} is not None and ({' or '.join(parts)}): F(({j}, i, {v})){mark}"]
        if kind == ALLOWED:
            self.namespace[f"A{j}"] = p["allowed"]
            return [f"if {v} is not None and {v} not in A{j}: F(({j}, i, {v})){mark}"]
        text = f"({v} if {v}.__class__ is str else TXT({v}))"
        if kind == REGEX:
            self.namespace[f"S{j}"] = p["search"]
            return [f"if {v} is not None and S{j}{text} is None: F(({j}, i, {v})){mark}"]
        if kind == LENGTH:
            self.namespace[f"L{j}"], self.namespace[f"H{j}"] = p["low"], p["high"]
            return [f"if {v} is not None and not L{j} <= len{text} <= H{j}: "
                    f"F(({j}, i, {v})){mark}"]
        if kind == COMPARE:
            left, right = test.fields
            w = self._var(right)
            return [f"if {v} is not None and {w} is not None and not ({v} {p['op']} {w}): "
                    f"F(({j}, i, {{{left!r}: {v}, {right!r}: {w}}})){mark}"]
        if kind == FRESHNESS:
            fn = helpers.freshness(name, p["max_age_days"], p["allow_future"], p["kind"],
                                   p["declared"], self.now)
            if not declared:
                return self._call(j, fn, [v], mark)
            # Canonical values: two comparisons; the helper words the failures only.
            latest: Any = self.now if p["kind"] == DATETIME else self.now.date()
            self.namespace[f"N{j}"] = latest
            parts = [] if p["allow_future"] else [f"{v} > N{j}"]
            if p["max_age_days"] is not None:
                self.namespace[f"O{j}"] = latest - timedelta(days=p["max_age_days"])
                parts.append(f"{v} < O{j}")
            return [f"if {v} is not None and ({' or '.join(parts)}):",
                    *self._call(j, fn, [v], mark)[1:]]
        if kind == CALL:
            return self._call(j, p["fn"], [self._var(f) for f in test.fields], mark)
        raise ValueError(f"no code for test kind {kind!r}")

    def _call(self, j: int, fn: Callable[..., Any], values: list[str], mark: str) -> list[str]:
        self.namespace[f"X{j}"] = fn
        present = " and ".join(f"{v} is not None" for v in values)
        return [
            f"if {present}:",
            f"    m = X{j}({', '.join(values)})",
            f"    if m is not None: F(({j}, i, m[0], m[1])){mark}",
        ]

    # -- running -------------------------------------------------------------------------

    def _type_position(self, name: str) -> int:
        """The type rule of a coerced column, added for columns no rule names (metrics,
        lineage, `extra`) the first time the batch has one."""
        position = self._type_rule.get(name)
        if position is None:
            self.rules.append(replace(coercion_rule(name, self.kinds[name]), origin=DATA_TYPE))
            position = self._type_rule[name] = len(self.rules) - 1
        return position

    def _object_position(self) -> int:
        if self._object_rule is None:
            self.rules.append(OBJECT_RULE)
            self._object_rule = len(self.rules) - 1
        return self._object_rule

    def run(self, records: list[Any],
            repeated: Mapping[int, Container[int]] | None = None) -> Run:
        """Check `records`. `repeated`: per unique rule, the indices of records whose key
        occurs more than once in the whole batch, found elsewhere for a batch checked a
        chunk at a time; without it, keys are compared within `records`."""
        failures: list[Failure] = []
        seen: set[str] = set(self.layout or ())
        fields = list(self.declared)
        kinds = self.kinds
        data_type = self.data_type

        def slow(index: int, record: Any) -> tuple[Any, ...] | None:
            if not isinstance(record, Mapping):
                failures.append((self._object_position(), index, record))
                return None
            seen.update(record)
            out, errors = coerce_safely(record, data_type, kinds)
            errored = set()
            for name, value, message in errors:
                failures.append((self._type_position(name), index, value, message))
                errored.add(name)
            values = list(map(out.get, fields))
            if errored:  # checks see an unconvertible value as absent; `type` reports it
                values = [None if f in errored else v for f, v in zip(fields, values, strict=True)]
            return out, values, errored

        outs, invalid_list, columns = self.namespace["run"](records, failures, slow)
        invalid = set(invalid_list)
        invalid.update(i for i, out in enumerate(outs) if out is None)
        keys = {j: self._compared(j, column) for j, column in columns.items()}
        for j, keyed in keys.items():
            found = _repeated_within(keyed) if repeated is None else repeated.get(j, ())
            self._unique(j, keyed, found, failures, invalid)
        for name in sorted(seen):
            if name in kinds:
                self._type_position(name)
        return Run(outs, failures, invalid, self.rules, seen, keys)

    def _compared(self, j: int, column: list[Any]) -> list[tuple[int, Any]]:
        """(index, key) of the records a unique rule compares: a record with a null in any
        key field is not compared."""
        if len(self.rules[j].test.fields) == 1:
            return [(i, k) for i, k in enumerate(column) if k is not None]
        return [(i, k) for i, k in enumerate(column) if k is not None and None not in k]

    def _unique(self, j: int, keyed: list[tuple[int, Any]], repeated: Container[int],
                failures: list[Failure], invalid: set[int]) -> None:
        """All records sharing a key fail (which one is right cannot be told)."""
        if not repeated:
            return
        rule = self.rules[j]
        fields = rule.test.fields
        single = len(fields) == 1
        for i, key in keyed:
            if i in repeated:
                failures.append((j, i, dict(zip(fields, (key,) if single else key,
                                                strict=True))))
                if rule.severity == FAIL:
                    invalid.add(i)


def _repeated_within(keyed: list[tuple[int, Any]]) -> set[int]:
    """Indices whose key occurs more than once among `keyed`."""
    try:
        counts = Counter(k for _, k in keyed)
        hashed = keyed
    except TypeError:  # unhashable values from `extra`
        hashed = [(i, _hashable(k) if not isinstance(k, tuple) else tuple(map(_hashable, k)))
                  for i, k in keyed]
        counts = Counter(k for _, k in hashed)
    if len(counts) == len(keyed):
        return set()
    return {i for i, k in hashed if counts[k] > 1}
