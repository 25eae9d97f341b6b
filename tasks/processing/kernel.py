"""The per-record pass of the process stage, compiled: coercion, natural key and ratios.

`coerce_record` dispatches every field through a dict of converters, which alone caps a
stage near 200,000 records/s. Records of one batch nearly always share one set of keys, so
for each key set seen this module generates (once) a straight-line function that reads
every field by name and converts it inline for the common cases (text that needs only
trimming, ints, money as a numeric string, ISO dates), builds the natural key from the
converted locals and, when asked, computes the ratios with the very operations of
`metrics.ratio_function`. Any other value calls the converters `coerce_record` uses; a
value that fails to convert sends the record through `coerce_record` itself, so errors,
their messages and their order are its own. The results equal
`coerce_record` (+ `ratio_function`) record for record; the unit tests hold them to it.

Generated source only ever contains declared column names and record keys, each written
through repr(); record values never reach it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from tasks import progress
from tasks.coerce import (
    INTEGER_MAX,
    INTEGER_MIN,
    CoercionError,
    FieldError,
    coerce_record,
    in_decimal_range,
    to_boolean,
    to_date,
    to_datetime,
    to_decimal,
    to_integer,
    to_text,
)
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
from tasks.processing.metrics import ratio_context, ratio_function


class _Slow(Exception):
    """The generated code met a value it does not handle inline: use coerce_record."""


# Inline conversion of the local {v} per column kind; the fallbacks are coerce_record's own.
_TEMPLATES: dict[str, str] = {
    TEXT: (
        "if type({v}) is str: {v} = {v}.strip() or None\n"
        "elif {v} is not None: {v} = to_text({v})\n"
    ),
    INTEGER: (
        "if {v} is not None and (type({v}) is not int or not INT_MIN <= {v} <= INT_MAX):\n"
        "    {v} = to_integer({v})\n"
    ),
    DECIMAL: (
        "if type({v}) is str:\n"
        "    {v} = Decimal({v})\n"  # trims whitespace itself; '' or junk raise
        "    if not ({v}.is_finite() and in_range({v})): raise _Slow\n"
        "elif type({v}) is int:\n"
        "    {v} = Decimal({v})\n"
        "    if not in_range({v}): raise _Slow\n"
        "elif {v} is not None: {v} = to_decimal({v})\n"
    ),
    DATE: (
        # date.fromisoformat refuses surrounding whitespace, so a 10-character string it
        # accepts is one that to_date passes to it unchanged.
        "if type({v}) is str and len({v}) == 10: {v} = fromisoformat({v})\n"
        "elif {v} is not None: {v} = to_date({v})\n"
    ),
    DATETIME: "if {v} is not None: {v} = to_datetime({v})\n",
    BOOLEAN: "if {v} is not None and {v} is not True and {v} is not False: {v} = to_boolean({v})\n",
    JSON: "",
}

_NAMESPACE: dict[str, Any] = {
    "Decimal": Decimal,
    "fromisoformat": date.fromisoformat,
    "_Slow": _Slow,
    "to_text": to_text,
    "to_integer": to_integer,
    "to_decimal": to_decimal,
    "in_range": in_decimal_range,
    "INT_MIN": INTEGER_MIN,
    "INT_MAX": INTEGER_MAX,
    "to_date": to_date,
    "to_datetime": to_datetime,
    "to_boolean": to_boolean,
}

Ratio = tuple[str, str, str, int]  # name, numerator, denominator, scale
Item = tuple[int, dict[str, Any]]  # (index in the input, canonical record)
Bad = tuple[int, Any, list[FieldError]]  # (index, record as it came, coercion errors)
KeyedOrErrors = tuple[tuple[Any, ...], dict[str, Any]] | list[FieldError]


def _ratio_lines(ratios: Sequence[Ratio], local: Mapping[str, str],
                 columns: Mapping[str, str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Source lines setting m0, m1, ... and the (ratio name, local) pairs."""
    lines: list[str] = []
    uses: dict[str, int] = {}
    for _, numerator, denominator, _ in ratios:
        for operand in (numerator, denominator):
            if columns.get(operand) not in (INTEGER, DECIMAL):
                raise ValueError(f"ratio operand {operand} is not a numeric column")
            uses[operand] = uses.get(operand, 0) + 1
    # An int operand of several ratios is made a Decimal once, not by every division.
    as_decimal: dict[str, str] = {}
    for name, count in uses.items():
        if name in local and columns[name] == INTEGER and count > 1:
            var = as_decimal[name] = f"d{local[name]}"
            lines.append(f"    {var} = None if {local[name]} is None else Decimal({local[name]})\n")
    items = []
    for j, (name, numerator, denominator, scale) in enumerate(ratios):
        items.append((name, f"m{j}"))
        if numerator not in local or denominator not in local:
            lines.append(f"    m{j} = None\n")  # a field the record lacks: None, as .get() gives
            continue
        n = as_decimal.get(numerator, local[numerator])
        d = as_decimal.get(denominator, local[denominator])
        value = f"Decimal({n})" if n == local[numerator] and columns[numerator] == INTEGER else n
        if scale != 1:
            value = f"{value} * {scale!r}"
        lines.append(f"    m{j} = None if {n} is None or not {d} else {value} / {d}\n")
    return lines, items


# Kinds whose fast path usually hands back the very object read: stored back only if not.
_USUALLY_SAME = (TEXT, INTEGER, BOOLEAN)


def _body(keys: Sequence[str], columns: Mapping[str, str], ratios: Sequence[Ratio],
          in_place: bool) -> tuple[list[str], dict[str, str]]:
    """Lines (indented 4) that turn record `r` into `out`, and the local of each column.

    Every value is converted into locals first, so a record that fails is left untouched;
    in place, the converted values then replace the record's own and `out` is `r` itself.
    """
    lines: list[str] = []
    local: dict[str, str] = {}
    unknown: list[str] = []
    for i, name in enumerate(keys):
        kind = columns.get(name)
        if kind is None:
            unknown.append(name)
        elif name != EXTRA_COLUMN:
            var = local[name] = f"v{i}"
            lines.append(f"    {var} = r[{name!r}]\n")
            if in_place and kind in _USUALLY_SAME:
                lines.append(f"    o{i} = {var}\n")
            lines.extend(f"    {line}\n" for line in _TEMPLATES[kind].format(v=var).splitlines())
    items = list(local.items())
    if ratios:
        ratio_lines, ratio_items = _ratio_lines(ratios, local, columns)
        lines += ratio_lines
        items += ratio_items
    has_extra = EXTRA_COLUMN in keys and EXTRA_COLUMN in columns
    extra_items = ", ".join(f"{name!r}: r[{name!r}]" for name in unknown)
    if has_extra:
        # As coerce_record: fields it does not know override those of the incoming `extra`.
        lines.append(f"    e = r[{EXTRA_COLUMN!r}]\n")
        lines.append(f"    if type(e) is dict: x = {{**e, {extra_items}}}\n")
        lines.append(f"    elif e is None: x = {{{extra_items}}}\n")
        lines.append("    else: raise _Slow\n")
    elif unknown:
        lines.append(f"    x = {{{extra_items}}}\n")
    if not in_place:
        lines.append(f"    out = {{{', '.join(f'{k!r}: {v}' for k, v in items)}}}\n")
        if has_extra:
            lines.append(f"    if x: out[{EXTRA_COLUMN!r}] = x\n")
        elif unknown:
            lines.append(f"    out[{EXTRA_COLUMN!r}] = x\n")
        return lines, local
    # Unknown fields leave first: one may bear a ratio's name (a platform's own ctr).
    lines.extend(f"    del r[{name!r}]\n" for name in unknown)
    for name, var in items:
        kind = columns.get(name) if var.startswith("v") else None  # None: a ratio
        if kind in _USUALLY_SAME:
            lines.append(f"    if {var} is not o{var[1:]}: r[{name!r}] = {var}\n")
        elif kind != JSON:
            lines.append(f"    r[{name!r}] = {var}\n")
    if has_extra:
        lines.append(f"    if x: r[{EXTRA_COLUMN!r}] = x\n")
        lines.append(f"    else: del r[{EXTRA_COLUMN!r}]\n")
    elif unknown:
        lines.append(f"    r[{EXTRA_COLUMN!r}] = x\n")
    lines.append("    out = r\n")
    return lines, local


def shape_source(keys: Sequence[str], columns: Mapping[str, str],
                 key_fields: Sequence[str] = (), ratios: Sequence[Ratio] = (),
                 in_place: bool = False) -> str:
    """Source of two functions for records with exactly `keys`:

    `one(r) -> (natural key, record)`, and `run(records, i, n, by_key) -> j`, the same
    inlined in a loop that files records i, i+1, ... under their key in `by_key` and stops
    at the first record j it cannot take (another shape, or a value for coerce_record).
    """
    body, local = _body(keys, columns, ratios, in_place)
    key = "(" + "".join(f"{local.get(name, 'None')}, " for name in key_fields) + ")"
    indented = "".join("        " + line for line in body)
    return (
        "def one(r):\n" + "".join(body) + f"    return {key}, out\n"
        "\n"
        "def run(records, i, n, by_key):\n"
        "    while i < n:\n"
        "        r = records[i]\n"
        f"        if type(r) is not dict or len(r) != {len(keys)}: return i\n"
        "        try:\n"
        + indented +
        "        except _STOP:\n"
        "            return i\n"
        f"        by_key[{key}] = (i, out)\n"
        "        i += 1\n"
        "    return i\n"
    )


@dataclass(frozen=True)
class Shape:
    """The compiled functions of one key set (see shape_source)."""

    one: Callable[[dict[str, Any]], tuple[tuple[Any, ...], dict[str, Any]]]
    run: Callable[[Sequence[Any], int, int, dict[tuple[Any, ...], Item]], int]


def compile_shape(keys: Sequence[str], columns: Mapping[str, str],
                  key_fields: Sequence[str] = (), ratios: Sequence[Ratio] = (),
                  in_place: bool = False) -> Shape:
    namespace = dict(_NAMESPACE)
    source = shape_source(keys, columns, key_fields, ratios, in_place)
    code = compile(source, "<process shape>", "exec")
    exec(code, namespace)
    return Shape(namespace["one"], namespace["run"])


MAX_SHAPES = 64  # key sets compiled per kernel; records of further ones use coerce_record
PROGRESS_EVERY = 25_000  # records between two progress reports of a running stage
_FALLBACK = (_Slow, CoercionError, ArithmeticError, ValueError, TypeError)
_NAMESPACE["_STOP"] = (KeyError, *_FALLBACK)


@dataclass
class KernelOutput:
    items: list[Item] = field(default_factory=list)  # unique natural keys, first-seen order
    bad: list[Bad] = field(default_factory=list)
    duplicates: int = 0
    keys: list[tuple[Any, ...]] = field(default_factory=list)  # each item's natural key


class Kernel:
    """Coerces a batch, dedups it on the natural key (the last record wins, in the place of
    the first) and, with `ratios`, sets the data type's ratios.

    With `in_place`, a record that converts is converted in its own dict (which saves a
    new dict per record, some 15% of the time): for a caller that owns the batch and will
    not read it again, like the Celery stage. Records that fail are left as they came.
    """

    def __init__(self, data_type: DataType, columns: Mapping[str, str] | None = None,
                 ratios: bool = False, in_place: bool = False) -> None:
        self.data_type = data_type
        self.in_place = in_place
        self.columns = dict(columns if columns is not None else data_type.all_columns)
        self.key_fields = data_type.natural_key
        self.ratios: tuple[Ratio, ...] = tuple(
            (m.name, m.numerator, m.denominator, m.scale) for m in data_type.metrics
        ) if ratios else ()
        self._set_ratios = ratio_function(data_type) if self.ratios else None
        self._shapes: dict[frozenset[Any], Shape] = {}

    def _shape_for(self, record: Any) -> Shape | None:
        if type(record) is not dict:
            return None
        keys = frozenset(record)
        shape = self._shapes.get(keys)
        if shape is None and len(self._shapes) < MAX_SHAPES:
            shape = self._shapes[keys] = compile_shape(
                list(record), self.columns, self.key_fields, self.ratios, self.in_place)
        return shape

    def run(self, records: Sequence[Any]) -> KernelOutput:
        with ratio_context():  # the ratios' precision; coercion itself is exact in any context
            return self._run(records)

    def _run(self, records: Sequence[Any]) -> KernelOutput:
        output = KernelOutput()
        by_key: dict[tuple[Any, ...], Item] = {}
        i, n = 0, len(records)
        reported = 0
        while i < n:
            if i - reported >= PROGRESS_EVERY:
                progress.report(i)  # a no-op outside a running stage
                reported = i
            record = records[i]
            shape = self._shape_for(record)
            if shape is not None:
                j = shape.run(records, i, min(n, reported + PROGRESS_EVERY), by_key)
                if j > i:  # a run of records of this shape; j starts another (or the end)
                    i = j
                    continue
            # Record i is of no compiled shape, or has a value the shape does not take.
            done = self._slow(record)
            if isinstance(done, list):
                output.bad.append((i, record, done))
            else:
                by_key[done[0]] = (i, done[1])
            i += 1
        output.items = list(by_key.values())
        output.keys = list(by_key)
        output.duplicates = n - len(output.bad) - len(output.items)
        return output

    def _slow(self, record: Any) -> KeyedOrErrors:
        """(key, record) through coerce_record, or its errors."""
        out, errors = self._reference(record)
        if errors:
            return errors
        return tuple(map(out.get, self.key_fields)), out

    def _reference(self, record: Any) -> tuple[dict[str, Any], list[FieldError]]:
        if not isinstance(record, Mapping):
            return {}, [("", None, "expected a JSON object")]
        out, errors = coerce_record(record, self.data_type, self.columns)
        if not errors and self._set_ratios is not None:
            self._set_ratios(out)
        return out, errors

    def coerce(self, record: Any) -> tuple[dict[str, Any], list[FieldError]]:
        """One record, as coerce_record returns it (plus the ratios when the kernel has them),
        through the compiled shape whenever it can: for tests and tools, not for batches."""
        with ratio_context():
            shape = self._shape_for(record)
            if shape is not None:
                try:
                    return shape.one(record)[1], []
                except _FALLBACK:
                    pass
            return self._reference(record)
