"""The store stage core: coerce to the table's types and upsert in bulk."""

from __future__ import annotations

from collections.abc import Container, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from tasks import progress
from tasks.coerce import coerce_record
from tasks.datatypes import DataType
from tasks.stage import StageFailure, StageOutput, utc_timestamp
from tasks.storage.partitions import TooManyPartitions
from tasks.storage.quarantine import Rejected
from tasks.storage.upsert import upsert, upsert_stored

# Records upserted per statement by the store stage (progress is reported between them).
STORE_SLICE = 20_000


class StorageOptionError(ValueError):
    """storage_options that cannot be honoured; details say what is allowed."""

    def __init__(self, message: str, details: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.details = dict(details)


def check_options(data_type: DataType, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Normalised storage options; a table other than the data type's own is refused."""
    options = dict(options or {})
    allowed = [data_type.table_name, *data_type.table_aliases]
    table = options.get("table_name", data_type.table_name)
    if table not in allowed:
        raise StorageOptionError(
            f"table_name {table!r} is not a table of {data_type.name}",
            {"field": "storage_options.table_name", "allowed": allowed},
        )
    upsert_flag = options.get("upsert", True)
    if not isinstance(upsert_flag, bool):
        raise StorageOptionError("storage_options.upsert must be true or false",
                                 {"field": "storage_options.upsert"})
    return {"table_name": data_type.table_name, "upsert": upsert_flag}


def _upsert_in_slices(
    conn: Connection, data_type: DataType, records: list[dict[str, Any]], total: int,
    **upsert_options: Any,
) -> dict[str, int]:
    """One upsert per slice of STORE_SLICE records, in the caller's transaction, with
    progress after each (a large batch's store is the longest stage). Keys repeated
    across slices are resolved first, last record wins, so the counts stay exact."""
    if len(records) <= STORE_SLICE:
        return upsert(conn, data_type, records, **upsert_options)
    last: dict[tuple[Any, ...], dict[str, Any]] = {}
    for record in records:
        last[tuple(record.get(k) for k in data_type.natural_key)] = record
    unique = list(last.values())
    totals = {"inserted": 0, "updated": 0, "skipped": 0,
              "duplicates_in_batch": len(records) - len(unique)}
    for start in range(0, len(unique), STORE_SLICE):
        part = unique[start:start + STORE_SLICE]
        counts = upsert(conn, data_type, part, **upsert_options)
        for key in ("inserted", "updated", "skipped"):
            totals[key] += counts[key]
        progress.report(total * (start + len(part)) // len(unique))
    return totals


def every_natural_key(records: Sequence[Any],
                      data_type: DataType) -> Iterator[tuple[int, Any]]:
    """(position, natural key) of every record that converts, repeats within `records`
    included: what a first pass over a batch stored in chunks needs to find keys
    repeated across chunks (the store skips all but the batch's last of each)."""
    for index, raw in enumerate(records):
        record, errors = coerce_record(raw, data_type)
        if not errors:
            yield index, tuple(record.get(k) for k in data_type.natural_key)


def store(
    conn: Connection,
    records: list[dict[str, Any]],
    data_type: DataType,
    options: Mapping[str, Any] | None,
    *,
    job_id: str,
    accepted_at: datetime | None = None,
    superseded: Container[int] = (),
) -> StageOutput:
    """Upsert `records`, each converted to its columns' types first; one that cannot be
    is quarantined. (Our process stage's output, already converted, goes through
    `store_chunk` instead.)

    `superseded`: positions of records that a later record of the same key, in a later
    chunk of the batch, replaces; they are skipped and counted as duplicates.
    """
    opts = check_options(data_type, options)
    clean: list[dict[str, Any]] = []
    rejected: list[Rejected] = []
    for index, raw in enumerate(records):
        if index in superseded:
            continue
        record, errors = coerce_record(raw, data_type)
        if errors:
            rejected.append(Rejected(index, raw, [
                {"rule": "type", "field": f, "value": v, "message": m} for f, v, m in errors
            ]))
        else:
            clean.append(record)
    try:
        counts = _upsert_in_slices(conn, data_type, clean, len(records), job_id=job_id,
                                   update_existing=opts["upsert"], accepted_at=accepted_at)
    except TooManyPartitions as exc:
        raise StageFailure("invalid_dates", str(exc), {"field": data_type.date_column},
                           rejected=rejected) from None
    counts["duplicates_in_batch"] += len(records) - len(clean) - len(rejected)
    return _store_output(counts, len(records), opts, rejected)


def store_chunk(
    conn: Connection,
    data_type: DataType,
    options: Mapping[str, Any] | None,
    *,
    job_id: str,
    payload: str,
    seq: int,
    accepted_at: datetime | None = None,
    body: str | None = None,
    expected: int | None = None,
) -> StageOutput:
    """`store` of one chunk of canonical records (our process stage's output) that
    PostgreSQL reads from the claim check itself, or from `body` (upsert_stored). The
    process stage leaves one record per natural key in a batch, so the chunk holds no
    repeated key (upsert_stored's `unique_keys`). `expected`: the chunk's record count,
    which PostgreSQL must read."""
    opts = check_options(data_type, options)
    try:
        counts = upsert_stored(conn, data_type, job_id=job_id, payload=payload, seq=seq,
                               update_existing=opts["upsert"], accepted_at=accepted_at,
                               body=body, unique_keys=True, expected=expected)
    except TooManyPartitions as exc:
        raise StageFailure("invalid_dates", str(exc), {"field": data_type.date_column}) \
            from None
    staged = counts["inserted"] + counts["updated"] + counts["skipped"] + \
        counts["duplicates_in_batch"]
    return _store_output(counts, staged, opts, [])


def _store_output(counts: dict[str, int], records_in: int, opts: Mapping[str, Any],
                  rejected: list[Rejected]) -> StageOutput:
    return StageOutput(
        records=[],
        rejected=rejected,
        records_in=records_in,
        records_out=counts["inserted"] + counts["updated"],
        result={
            "stored_at": utc_timestamp(),
            "records_count": counts["inserted"] + counts["updated"],
            "table_name": opts["table_name"],
            **counts,
            "status": "success",
        },
    )
