"""Claim check: batches of records stored in PostgreSQL by (job, name), in chunks.

Celery messages carry only the job id; every stage loads its input from here and saves
its output here, in the same transaction as its status update.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from tasks.coerce import json_default
from tasks.storage.schema import payloads_table

RAW = "raw"
DEFAULT_CHUNK = 10_000


def encode(records: Sequence[Any]) -> str:
    return orjson.dumps(records, default=json_default).decode()


def save(
    conn: Connection, job_id: str, name: str, records: Sequence[Any], chunk: int = DEFAULT_CHUNK,
    first_seq: int = 0, replace: bool = False,
) -> int:
    """Store `records` under (job_id, name) in chunks; returns the next free sequence number.

    `replace`: a stage that runs again (a redelivered message) replaces what an earlier
    attempt left.
    """
    if replace:
        discard(conn, job_id, [name])
    seq = first_seq
    rows = []
    for start in range(0, len(records), chunk):
        part = records[start:start + chunk]
        rows.append({
            "job_id": job_id, "name": name, "seq": seq,
            "record_count": len(part), "body": encode(part),
        })
        seq += 1
    if not rows:  # an empty output is still an output: the next stage must find it
        rows.append({"job_id": job_id, "name": name, "seq": seq, "record_count": 0,
                     "body": "[]"})
        seq += 1
    conn.execute(insert(payloads_table), rows)
    return seq


def save_encoded(conn: Connection, job_id: str, name: str, seq: int, count: int,
                 body: str) -> None:
    """Store one chunk that is already JSON (a streamed upload)."""
    conn.execute(insert(payloads_table).values(
        job_id=job_id, name=name, seq=seq, record_count=count, body=body))


def load(conn: Connection, job_id: str, name: str) -> list[Any]:
    """Every record stored under (job_id, name), at once (stages read a chunk at a time:
    tasks/chunks.py)."""
    query = (
        select(payloads_table.c.body)
        .where(payloads_table.c.job_id == job_id, payloads_table.c.name == name)
        .order_by(payloads_table.c.seq)
    )
    records: list[Any] = []
    for (body,) in conn.execute(query):
        records.extend(orjson.loads(body))
    return records


def discard(conn: Connection, job_id: str, names: Iterable[str]) -> None:
    conn.execute(delete(payloads_table).where(
        payloads_table.c.job_id == job_id, payloads_table.c.name.in_(list(names))))
