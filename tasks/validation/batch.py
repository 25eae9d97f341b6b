"""A batch after coercion: canonical records plus per-field columns for the checks.

`coerce_batch` gives every record the value coerce_record would give it, but works one
column at a time (see convert.py). The checks then read whole columns, which is what
makes a rule cost a few C-level passes instead of a Python call per record.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from operator import is_, itemgetter
from typing import Any

from tasks.datatypes import EXTRA_COLUMN, DataType
from tasks.validation.convert import ColumnErrors, convert_column

_EMPTY: Mapping[str, Any] = {}


class Batch:
    """Canonical records of a batch and the columns the checks read.

    `column(field)` holds canonical values, with None where the field is missing, null,
    blank or could not be converted; `errors[field]` lists the conversions that failed.
    Undeclared fields are read from each record's `extra`, as they came.
    """

    def __init__(self, raw: list[Any], data_type: DataType, now: datetime) -> None:
        self.raw = raw
        self.size = len(raw)
        self.data_type = data_type
        self.kinds = data_type.all_columns
        self.now = now
        self.records: list[dict[str, Any]] = []
        self.errors: dict[str, ColumnErrors] = {}
        self.not_objects: list[int] = []
        self.fields_seen: set[str] = set()
        self._columns: dict[str, list[Any]] = {}

    def kind(self, field: str) -> str | None:
        """The declared kind of a field, or None for a field that lives in `extra`."""
        return None if field == EXTRA_COLUMN else self.kinds.get(field)

    def column(self, field: str) -> list[Any]:
        values = self._columns.get(field)
        if values is None:
            if self.kind(field) is not None:
                values = [None] * self.size
            else:
                values = [o.get(EXTRA_COLUMN, _EMPTY).get(field) for o in self.records]
            self._columns[field] = values
        return values

    def error_indices(self, field: str) -> set[int]:
        return {index for index, _, _ in self.errors.get(field, ())}

    def present(self, field: str) -> list[bool]:
        """Whether each record carries the field at all (null or not)."""
        if self.kind(field) is not None:
            return [field in o for o in self.records]
        return [field in o.get(EXTRA_COLUMN, _EMPTY) for o in self.records]

    def raw_value(self, index: int, field: str) -> Any:
        record = self.raw[index]
        if not isinstance(record, Mapping):
            return None
        if field in record or self.kind(field) is not None:
            return record.get(field)
        return self.records[index].get(EXTRA_COLUMN, _EMPTY).get(field)


def _columns(records: list[Mapping[str, Any]], wanted: Any) -> tuple[set[str], dict[str, list]]:
    """The fields seen in the batch and the raw values of those in `wanted`, per field.

    Batches are usually uniform (every record has the first record's keys): then one pass
    reads each record once, which is much cheaper than one pass per field over 100,000
    dicts; otherwise every field is read with .get.
    """
    if not records:
        return set(), {}
    first = list(records[0])
    take = [k for k in first if k in wanted]
    if take and sum(map(len, records)) == len(first) * len(records):
        try:
            rows = list(map(itemgetter(*take), records))
        except KeyError:
            pass
        else:
            if len(take) == 1:
                return set(first), {take[0]: rows}
            return set(first), {k: list(map(itemgetter(j), rows)) for j, k in enumerate(take)}
    seen: set[str] = set().union(*records)
    return seen, {k: [r.get(k) for r in records] for k in seen if k in wanted}


def _split_extra(
    record: Mapping[str, Any], plain: Mapping[str, str]
) -> tuple[dict[str, Any] | None, Any]:
    """coerce_record's handling of unknown fields and `extra`: (extra, bad extra value)."""
    extra: dict[str, Any] | None = None
    bad: Any = None
    for name, value in record.items():
        if name in plain:
            continue
        if name == EXTRA_COLUMN:
            if isinstance(value, Mapping):
                extra = {**value, **(extra or {})}
            elif value is not None:
                bad = value
            continue
        if extra is None:
            extra = {}
        extra[name] = value
    return extra, bad


def coerce_batch(raw: list[Any], data_type: DataType, now: datetime) -> Batch:
    batch = Batch(raw, data_type, now)
    work: list[Mapping[str, Any]] = raw
    if not set(map(type, raw)) <= {dict}:
        batch.not_objects = [i for i, r in enumerate(raw) if not isinstance(r, Mapping)]
        work = [r if isinstance(r, Mapping) else _EMPTY for r in raw]
    out = batch.records = list(map(dict, work))
    plain = {c: k for c, k in batch.kinds.items() if c != EXTRA_COLUMN}
    seen, columns = _columns(work, plain)
    batch.fields_seen = seen

    for field, values in columns.items():
        canonical, errors = convert_column(plain[field], values)
        if canonical is not values and not all(map(is_, canonical, values)):
            for record, before, after in zip(out, values, canonical, strict=True):
                if before is not after:
                    record[field] = after
        for index, value, _ in errors:
            out[index][field] = value  # kept as it came, as coerce_record does
        if errors:
            batch.errors[field] = errors
        batch._columns[field] = canonical

    if not seen.issubset(plain):
        extra_errors: ColumnErrors = []
        for index, record in enumerate(work):
            if record.keys() <= plain.keys():
                continue
            extra, bad = _split_extra(record, plain)
            target = out[index]
            for name in record:
                if name not in plain:
                    del target[name]
            if extra:
                target[EXTRA_COLUMN] = extra
            if bad is not None:
                extra_errors.append((index, bad, "expected an object"))
        if extra_errors:
            batch.errors[EXTRA_COLUMN] = extra_errors
    return batch
