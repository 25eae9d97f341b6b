"""Quarantined records: what a stage refused, why, and the record as it came."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from tasks import jsontext
from tasks.storage.schema import rejected_table


@dataclass(frozen=True)
class Rejected:
    """One refused record: its index in the stage's input, the record, and the reasons."""

    index: int
    record: Any
    reasons: list[dict[str, Any]]


def jsonable(value: Any) -> Any:
    """`value` in JSON's own types. Records may hold Decimals and dates after coercion:
    they are kept as JSON text values."""
    try:
        return jsontext.plain(value)
    except TypeError:  # an odd object: kept as its text
        return json.loads(json.dumps(value, default=str))


def save(conn: Connection, job_id: str, stage: str, rejected: Sequence[Rejected],
         offset: int = 0) -> None:
    """Quarantine `rejected`; their indices are relative to a chunk starting at `offset`."""
    if not rejected:
        return
    conn.execute(insert(rejected_table), [
        {
            "job_id": job_id, "stage": stage, "record_index": r.index + offset,
            "record": jsonable(r.record), "reasons": jsonable(r.reasons),
        }
        for r in rejected
    ])


def count(conn: Connection, job_id: str) -> int:
    return conn.execute(
        select(func.count()).select_from(rejected_table).where(rejected_table.c.job_id == job_id)
    ).scalar_one()


def page(conn: Connection, job_id: str, limit: int, offset: int) -> list[dict[str, Any]]:
    query = (
        select(rejected_table)
        .where(rejected_table.c.job_id == job_id)
        .order_by(rejected_table.c.id)
        .limit(limit)
        .offset(offset)
    )
    return [
        {
            "id": row["id"], "stage": row["stage"], "record_index": row["record_index"],
            "record": row["record"], "reasons": row["reasons"],
            "replayed_by": row["replayed_by"],
        }
        for row in conn.execute(query).mappings()
    ]


def mark_replayed(conn: Connection, job_id: str, replay_job_id: str) -> int:
    result = conn.execute(
        update(rejected_table)
        .where(rejected_table.c.job_id == job_id, rejected_table.c.replayed_by.is_(None))
        .values(replayed_by=replay_job_id)
    )
    return result.rowcount


def count_pending(conn: Connection, job_id: str) -> int:
    """Quarantined records of the job not yet replayed."""
    return conn.execute(
        select(func.count()).select_from(rejected_table).where(
            rejected_table.c.job_id == job_id, rejected_table.c.replayed_by.is_(None))
    ).scalar_one()


def replayed_by(conn: Connection, job_id: str) -> list[str]:
    rows = conn.execute(
        select(rejected_table.c.replayed_by).distinct().where(
            rejected_table.c.job_id == job_id, rejected_table.c.replayed_by.is_not(None))
    )
    return sorted(str(r[0]) for r in rows)
