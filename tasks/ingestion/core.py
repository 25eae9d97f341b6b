"""The ingest stage core: a source's native payload in, canonical records out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tasks.coerce import coerce_record
from tasks.datatypes import get_data_type
from tasks.ingestion.adapters import get_adapter
from tasks.stage import StageOutput, utc_timestamp
from tasks.storage.quarantine import Rejected


def count_rows(data: Any, source: str | None, data_type: str) -> int:
    """Rows in a payload; raises UnknownSource, UnsupportedDataType or PayloadShapeError."""
    adapter = get_adapter(source, data_type)
    rows = adapter.rows(data)
    return len(rows) if hasattr(rows, "__len__") else sum(1 for _ in rows)


def ingest(
    data: Any,
    source: str | None,
    data_type: str,
    options: Mapping[str, Any] | None = None,
    *,
    coerce: bool = True,
) -> StageOutput:
    """Map every native row to a canonical record with canonical Python types.

    A row that is not an object, or that the adapter cannot map, is refused with its
    reason; values that cannot be converted stay as they came, for validation to report.
    `coerce=False` leaves the type conversion to the validate stage, which does it anyway
    (the pipeline's ingest step skips it: it would be done twice).
    """
    options = options or {}
    declaration = get_data_type(data_type)
    adapter = get_adapter(source, data_type)
    records: list[dict[str, Any]] = []
    rejected: list[Rejected] = []
    rows_in = 0
    for index, row in enumerate(adapter.rows(data)):
        rows_in += 1
        if not isinstance(row, Mapping):
            rejected.append(Rejected(index, row, [{
                "rule": "object", "field": None, "value": None,
                "message": "record is not a JSON object",
            }]))
            continue
        try:
            canonical = adapter.to_canonical(row, data_type, options)
        except (ValueError, KeyError, TypeError) as exc:
            rejected.append(Rejected(index, row, [{
                "rule": "source_format", "field": None, "value": None,
                "message": f"{adapter.name}: {exc}",
            }]))
            continue
        if source and not canonical.get("source"):
            canonical["source"] = source
        if coerce:
            canonical, _errors = coerce_record(canonical, declaration)
        records.append(canonical)
    return StageOutput(
        records=records,
        rejected=rejected,
        records_in=rows_in,
        result={
            "ingested_at": utc_timestamp(),
            "records_count": len(records),
            "records_refused": len(rejected),
            "status": "success",
        },
    )
