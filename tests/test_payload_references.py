"""The validate stage's output stored as references to its input's chunks, less what it
refused (tasks/chunks.py StageSink.pass_on, payloads.save_reference): read back as the
records they stand for, by every reader, and a pipeline storing exactly what it stores
when every output is written in full."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tasks.chunks import StageInput, lock_job_with_input
from tasks.ingestion.tasks import ingest_step
from tasks.processing.tasks import process_step
from tasks.runner import run_stage
from tasks.storage import jobs, payloads, quarantine
from tasks.storage.tasks import store_step
from tasks.validation.tasks import validate_step
from tests.helpers import close_job, stage_output, stored_job

pytestmark = pytest.mark.usefixtures("clean_tables")

STAGES = ["ingest", "validate", "process", "store"]
STEPS = {"ingest": ingest_step, "validate": validate_step, "process": process_step,
         "store": store_step}


def _payload_rows(engine: Engine, job_id: str, name: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT seq, record_count, body IS NULL, same_as, same_seq, dropped"
            " FROM pipeline_payloads WHERE job_id = :job AND name = :name ORDER BY seq"),
            {"job": job_id, "name": name})]


def test_a_reference_reads_as_the_records_it_stands_for(engine: Engine):
    first, second = [{"n": i} for i in range(5)], [{"n": i} for i in range(5, 8)]
    job_id = stored_job(engine, first + second, ["ingest", "validate", "later"])
    with engine.begin() as conn:
        payloads.save(conn, job_id, "ingest", first + second, chunk=5)
        assert payloads.save_reference(conn, job_id, "validate", 0, 3, "ingest", 0, [1, 3])
        assert payloads.save_reference(conn, job_id, "validate", 1, 3, "ingest", 1, [])
        # Never a reference to a reference, nor to a chunk that is not stored.
        assert not payloads.save_reference(conn, job_id, "later", 0, 3, "validate", 1, [])
        assert not payloads.save_reference(conn, job_id, "later", 0, 3, "ingest", 2, [])
    assert _payload_rows(engine, job_id, "validate") == [
        (0, 3, True, "ingest", 0, [1, 3]), (1, 3, True, "ingest", 1, None)]
    assert _payload_rows(engine, job_id, "later") == []
    expected = [{"n": 0}, {"n": 2}, {"n": 4}, *second]
    with engine.begin() as conn:
        assert payloads.load(conn, job_id, "validate") == expected
        # A stage's reading: the head read with the claim, then the next chunk.
        job, head = lock_job_with_input(conn, job_id, "later")
        assert head.body is not None and head.dropped == [1, 3]
        source = StageInput(conn, job_id, "validate", head)
        assert [(offset, chunk) for offset, chunk in source.chunks()] == [
            (0, expected[:3]), (3, second)]
        assert source.held_chunk() is None  # its text holds records it leaves out
        unheld = StageInput(conn, job_id, "validate")
        assert [chunk for _, chunk in unheld.chunks()] == [expected[:3], second]
    close_job(engine, job_id)


def test_a_reference_whose_chunk_is_gone_fails_its_reader(engine: Engine):
    job_id = stored_job(engine, [{"n": 1}], ["ingest", "validate", "later"])
    with engine.begin() as conn:
        payloads.save(conn, job_id, "ingest", [{"n": 1}])
        assert payloads.save_reference(conn, job_id, "validate", 0, 1, "ingest", 0, [])
        payloads.discard(conn, job_id, ["ingest"])  # its stage's output replaced
        with pytest.raises(payloads.MissingChunk, match="chunk 0 of 'validate'"):
            payloads.load(conn, job_id, "validate")
        with pytest.raises(payloads.MissingChunk):
            list(StageInput(conn, job_id, "validate").chunks())
    close_job(engine, job_id)


def _records() -> list[Any]:
    rows: list[Any] = [
        {"account_id": "ref", "campaign_id": f"c{i}", "date": "2025-03-01",
         "spend": f"{10 + i}.50", "impressions": 1000 + i, "clicks": 40, "conversions": 2,
         "roas": 3.5, "utm": {"source": "x"}}
        for i in range(40)
    ]
    rows[3]["spend"] = "-5"                     # refused by validation: non_negative
    rows[11]["impressions"] = "many"            # type
    rows[20] = "not an object"                  # refused by ingest
    for i in range(22, 27):
        rows[i]["clicks"] = -1                  # most of a chunk refused
    rows.append({**rows[2], "spend": "99"})     # repeats c2 across chunks
    return rows


def _pipeline(engine: Engine) -> tuple[str, list[tuple], list[dict[str, Any]]]:
    """The batch run stage by stage in chunks of 7: the job, the validate stage's payload
    rows, and the rows stored."""
    job_id = stored_job(engine, _records(), STAGES, chunk=7)
    for stage in STAGES:
        if stage == "process":
            validated = _payload_rows(engine, job_id, "validate")
        run_stage(job_id, stage, STEPS[stage])
    with engine.connect() as conn:
        job = jobs.get(conn, job_id)
        assert job is not None and job["status"] == "succeeded", job
        refused = [(r["stage"], r["record_index"])
                   for r in quarantine.page(conn, job_id, 1000, 0)]
        stored = [dict(r) for r in conn.execute(text(
            "SELECT campaign_id, spend, impressions, clicks, roas, extra"
            " FROM campaign_performance WHERE account_id = 'ref' ORDER BY campaign_id")
        ).mappings()]
        conn.execute(text("DELETE FROM campaign_performance WHERE account_id = 'ref'"))
        conn.commit()
    assert refused == [("ingest", 20), ("validate", 3), ("validate", 11),
                       *[("validate", i) for i in range(21, 26)]]
    return job_id, validated, stored


def test_the_pipeline_stores_the_same_through_references_as_through_full_outputs(
        engine: Engine, monkeypatch: pytest.MonkeyPatch):
    job_id, validated, by_reference = _pipeline(engine)
    # The ingest stage's chunks hold 7, 7, 6 (its third raw chunk held "not an object"),
    # 7, 7 and 6 records. The validate stage's output refers to each, less what it
    # refused, except the fourth, of which it refused 5 (its positions 21-25): written.
    assert [(seq, count, same_as, same_seq, dropped)
            for seq, count, _, same_as, same_seq, dropped in validated] == [
        (0, 6, "ingest", 0, [3]), (1, 6, "ingest", 1, [4]), (2, 6, "ingest", 2, None),
        (3, 2, None, None, None), (4, 7, "ingest", 4, None), (5, 6, "ingest", 5, None)]
    assert [body_is_null for _, _, body_is_null, *_ in validated] == [
        True, True, True, False, True, True]
    close_job(engine, job_id)

    monkeypatch.setattr(payloads, "save_reference", lambda *args, **kwargs: False)
    job_id, validated, in_full = _pipeline(engine)
    assert all(not body_is_null for _, _, body_is_null, *_ in validated)
    assert by_reference == in_full
    assert len(in_full) == 41 - 1 - 2 - 5 - 1  # c2 stored once, with its last record's spend
    c2 = next(r for r in in_full if r["campaign_id"] == "c2")
    assert str(c2["spend"]) == "99"
    # A derived ratio the batch gave is recomputed; the value sent is kept in extra.
    assert c2["extra"] == {"roas": 3.5, "utm": {"source": "x"}}
    close_job(engine, job_id)


def test_the_stages_output_the_records_as_they_came_less_those_refused(engine: Engine):
    job_id = stored_job(engine, _records(), STAGES, chunk=7)
    run_stage(job_id, "ingest", ingest_step)
    run_stage(job_id, "validate", validate_step)
    ingested = stage_output(engine, job_id, "ingest")
    refused = {3, 11, *range(21, 26)}
    assert stage_output(engine, job_id, "validate") == [
        r for i, r in enumerate(ingested) if i not in refused]
    close_job(engine, job_id)
