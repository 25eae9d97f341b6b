"""The `generic` source: records already carry canonical field names."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tasks.datatypes import DATA_TYPES
from tasks.ingestion.adapters.base import records_list


class GenericAdapter:
    data_types = frozenset(DATA_TYPES)
    rows_pass_through = True

    def __init__(self, name: str = "generic") -> None:
        self.name = name

    def rows(self, data: Any) -> Iterable[Mapping[str, Any]]:
        return records_list(data)

    def to_canonical(
        self, row: Mapping[str, Any], data_type: str, options: Mapping[str, Any]
    ) -> dict[str, Any]:
        return dict(row)
