"""What a source adapter is: native rows in, canonical field names out.

`rows()` only locates the list of rows in a payload (the API calls it to count records
before accepting a request), so it never touches a row. `to_canonical()` maps one row;
it runs once per record, so the platform adapters take a fast path for rows that carry
none of the platform's native names (the seed's canonical records).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol


class PayloadShapeError(ValueError):
    """The request's `data` is not a shape this source sends; the message says what is."""


class Adapter(Protocol):
    name: str
    # Data types this source can produce.
    data_types: frozenset[str]
    # True when `to_canonical` gives every row back as it came (a copy), whatever the
    # options: the ingest stage then passes its input on by reference.
    rows_pass_through: bool

    def rows(self, data: Any) -> Iterable[Mapping[str, Any]]:
        """The native rows inside `data`: `{"records": [...]}` or the platform's own response."""
        ...

    def to_canonical(
        self, row: Mapping[str, Any], data_type: str, options: Mapping[str, Any]
    ) -> dict[str, Any]:
        """One native row as canonical field names; values may still be strings.

        Fields the adapter does not map are kept under their own names, so they end
        up in the record's `extra` column rather than being dropped.
        """
        ...


RECORDS_SHAPE = '{"records": [...]}'


def records_list(data: Any) -> list[Any]:
    """`data.records` as a list, or a PayloadShapeError saying what was expected."""
    if isinstance(data, Mapping) and "records" in data:
        records = data["records"]
        if isinstance(records, list):
            return records
        raise PayloadShapeError("data.records must be a list of objects")
    raise PayloadShapeError(f"data must be {RECORDS_SHAPE}")


class ChainedRows:
    """Rows of several lists (response pages, stream batches) seen as one, without copying."""

    __slots__ = ("_parts",)

    def __init__(self, parts: list[Any]) -> None:
        self._parts = parts

    def __len__(self) -> int:
        return sum(map(len, self._parts))

    def __iter__(self) -> Iterator[Any]:
        return itertools.chain.from_iterable(self._parts)


class PlatformAdapter:
    """A platform source: `{"records": [...]}` or the platform's whole response.

    Subclasses set `name`, `data_types`, `native_shape` (for the error message) and
    `native_keys`, and implement `native_rows` (the row list of a response, or None if
    `data` is not one) and `from_native` (one native row as canonical field names).
    """

    rows_pass_through = False  # native rows are mapped

    name: str
    data_types: frozenset[str]
    native_shape: str
    # Field names only the platform's own rows carry (a row without any is canonical).
    native_keys: frozenset[str] = frozenset()
    # Option keys whose values fill a canonical field the row does not carry.
    default_fields: tuple[str, ...] = ("account_id", "currency")

    def rows(self, data: Any) -> Iterable[Mapping[str, Any]]:
        # Salesforce's own response carries `records` next to totalSize/done: same path.
        if isinstance(data, Mapping) and "records" in data:
            return records_list(data)
        rows = self.native_rows(data)
        if rows is None:
            raise PayloadShapeError(
                f"{self.name}: data must be {RECORDS_SHAPE} (native rows or canonical "
                f"records) or {self.native_shape}"
            )
        return rows

    def native_rows(self, data: Any) -> Iterable[Any] | None:
        raise NotImplementedError

    def to_canonical(
        self, row: Mapping[str, Any], data_type: str, options: Mapping[str, Any]
    ) -> dict[str, Any]:
        """A native row through `from_native`, a canonical one (as in the seed's examples)
        through `from_canonical`; then the option defaults for fields still missing."""
        if self.is_native(row):
            out = self.from_native(row, data_type, options)
        else:
            out = self.from_canonical(row)
        if options:
            self.fill_defaults(out, options)
        return out

    def is_native(self, row: Mapping[str, Any]) -> bool:
        """Whether the row carries any of the platform's own field names."""
        return not self.native_keys.isdisjoint(row)

    def from_native(
        self, row: Mapping[str, Any], data_type: str, options: Mapping[str, Any]
    ) -> dict[str, Any]:
        raise NotImplementedError

    def from_canonical(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return dict(row)

    def fill_defaults(self, out: dict[str, Any], options: Mapping[str, Any]) -> None:
        """Account, currency etc. given once in the ingestion options, for rows without them."""
        for key in self.default_fields:
            if out.get(key) is None:
                value = options.get(key)
                if value is not None:
                    out[key] = value


def list_under(data: Any, key: str) -> list[Any] | None:
    """`data[key]` when `data` is an object and that value is a list, else None."""
    if isinstance(data, Mapping):
        value = data.get(key)
        if isinstance(value, list):
            return value
    return None
