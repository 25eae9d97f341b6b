"""The claim check's chunks go in by binary COPY: what is stored is read back exactly."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError

from tasks.storage import db, payloads
from tasks.storage.schema import payloads_table
from tests.helpers import close_job, stored_job

# Text COPY would need these escaped; SQL literals would need the quotes doubled.
AWKWARD = [
    {"campaign_id": "tab\there", "campaign_name": "line\nbreak\r\nand \\ backslash \\N"},
    {"campaign_id": "quote's \"double\"", "campaign_name": "ünïcödé 广告 🚀", "spend": "0"},
    {"campaign_id": "nul\u0000char", "campaign_name": "", "extra": {"nested": [1, None]}},
]


def test_chunks_round_trip_byte_for_byte(engine, clean_tables):
    job_id = stored_job(engine, AWKWARD, ["ingest"])
    with engine.begin() as conn:
        next_seq = payloads.save(conn, job_id, "ingest", AWKWARD * 5, chunk=4, first_seq=3)
        rows = conn.execute(
            select(payloads_table.c.seq, payloads_table.c.record_count, payloads_table.c.body)
            .where(payloads_table.c.job_id == job_id, payloads_table.c.name == "ingest")
            .order_by(payloads_table.c.seq)).all()
        assert payloads.load(conn, job_id, payloads.RAW) == AWKWARD
        assert payloads.load(conn, job_id, "ingest") == AWKWARD * 5
    assert next_seq == 7
    assert [(seq, count) for seq, count, _ in rows] == [(3, 4), (4, 4), (5, 4), (6, 3)]
    assert rows[0][2] == payloads.encode((AWKWARD * 5)[:4]).decode()
    close_job(engine, job_id)


def test_an_empty_output_is_stored_and_values_json_cannot_hold_are_encoded(engine,
                                                                          clean_tables):
    job_id = stored_job(engine, [], ["ingest"])
    with engine.begin() as conn:
        payloads.save(conn, job_id, "ingest", [])
        payloads.save(conn, job_id, "validate", [{"spend": Decimal("1.50")}])
        assert payloads.load(conn, job_id, "ingest") == []
        assert payloads.load(conn, job_id, "validate") == [{"spend": "1.50"}]
    close_job(engine, job_id)


def test_errors_keep_their_kind_the_stage_runner_tells_apart(engine, clean_tables):
    """The runner retries SQLAlchemy's OperationalError and fails the job on anything
    else: a record that cannot be encoded, or a constraint, must not pass for an outage."""
    job_id = stored_job(engine, [{"a": 1}], ["ingest"])
    with pytest.raises(TypeError), engine.begin() as conn:
        payloads.save(conn, job_id, "ingest", [{"ok": 1}, {"not json": {1, 2}}], chunk=1)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        payloads.save_encoded(conn, job_id, payloads.RAW, 0, 1, b"[]")  # seq 0 exists
    with pytest.raises(OperationalError), engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL statement_timeout = '1ms'")
        with db.raw_cursor(conn) as cursor:
            cursor.execute("SELECT pg_sleep(1)")
    # A connection the server ends: out of the pool, and its own error is what surfaces.
    with pytest.raises(OperationalError) as lost, engine.begin() as conn:
        with db.raw_cursor(conn) as cursor:
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    assert lost.value.connection_invalidated
    assert "server closed the connection" in str(lost.value.orig)
    with engine.connect() as conn:  # nothing of the failed saves is left
        assert payloads.load(conn, job_id, "ingest") == []
    close_job(engine, job_id)
