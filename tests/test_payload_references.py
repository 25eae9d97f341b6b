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
from tasks.datatypes import CAMPAIGN_PERFORMANCE
from tasks.ingestion.tasks import ingest_step
from tasks.processing.tasks import process_step
from tasks.runner import run_stage
from tasks.storage import jobs, payloads, quarantine
from tasks.storage.tasks import store_step
from tasks.storage.upsert import StoredChunkMismatch, upsert_stored
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
            " FROM pipeline_payloads WHERE job_id = :job AND name = :name"
            " AND fill IS NULL"  # no field to fill: SQL NULL, never JSON null
            " ORDER BY seq"),
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
    # The ingest stage's output refers to the raw chunks (7, 7, 7, 7, 7 and 6 records),
    # the third less "not an object". The validate stage's refers to them too, less what
    # either stage refused, except to the fourth, of which it refused 5 (its positions
    # 21-25, raw 22-26): written.
    assert [(seq, count, same_as, same_seq, dropped)
            for seq, count, _, same_as, same_seq, dropped in validated] == [
        (0, 6, "raw", 0, [3]), (1, 6, "raw", 1, [4]), (2, 6, "raw", 2, [6]),
        (3, 2, None, None, None), (4, 7, "raw", 4, None), (5, 6, "raw", 5, None)]
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


@pytest.mark.parametrize(("before", "dropped", "composed"), [
    (None, [2, 0], [0, 2]),
    ([1, 3], [], [1, 3]),
    ([1, 3], [0, 1, 2], [0, 1, 2, 3, 4]),   # what is left: 0, 2, 4, 5, ...
    ([0, 1, 2], [0, 3], [0, 1, 2, 3, 6]),
    ([5], [4, 5, 6], [4, 5, 6, 7]),
])
def test_a_reference_to_a_reference_leaves_out_both_stages_positions(before, dropped,
                                                                     composed):
    assert payloads.compose(before, dropped) == composed
    base = list(range(12))
    once = payloads.without_positions(base, before or [])
    assert payloads.without_positions(once, dropped) == \
        payloads.without_positions(base, composed)


@pytest.mark.parametrize("filler", [0, 400])  # carried, then by reference (past 32 KiB)
def test_the_ingest_stage_sets_the_jobs_source_on_records_without_one(run_job, engine,
                                                                      filler):
    records = [
        {"campaign_id": "own", "date": "2025-05-01", "spend": "1", "source": "crm_sync"},
        {"campaign_id": "none", "date": "2025-05-01", "spend": "2"},
        {"campaign_id": "empty", "date": "2025-05-01", "spend": "-3", "source": ""},
        {"campaign_id": "refused", "date": "2025-05-01", "spend": "-4"},
    ] + [{"campaign_id": f"fill-{i}", "date": "2025-05-01", "spend": "1",
          "campaign_name": "x" * 60} for i in range(filler)]
    job = run_job("ingest", {"source": "generic", "data_type": "campaign_performance",
                             "data": {"records": records}})
    assert job["status"] == "succeeded", job
    assert job["result"]["records_count"] == 2 + filler
    with engine.connect() as conn:
        sources = dict(conn.execute(text(
            "SELECT campaign_id, source FROM campaign_performance"
            " WHERE campaign_id IN ('own', 'none', 'empty', 'fill-0')")).all())
        refused = conn.execute(text(
            "SELECT stage, record_index, record FROM pipeline_rejected WHERE job_id = :job"
            " ORDER BY record_index"),
            {"job": job["job_id"]}).all()
    assert sources == {"own": "crm_sync", "none": "generic",
                       **({"fill-0": "generic"} if filler else {})}
    # Quarantined records are the validate stage's input as it read it: source set.
    assert [(stage, index, record["source"]) for stage, index, record in refused] == [
        ("validate", 2, "generic"), ("validate", 3, "generic")]


def test_the_store_never_reads_a_reference_as_an_empty_chunk(engine: Engine):
    """PostgreSQL reads the process stage's output itself, and a chunk stored as a
    reference has no body there: given the chunk's count, the store fails instead of
    storing nothing (only the ingest and validate stages make references)."""
    job_id = stored_job(engine, [{"campaign_id": "r"}], ["process", "store"])
    with engine.begin() as conn:
        payloads.save(conn, job_id, "ingest", [{"campaign_id": "r", "source": "generic"}])
        assert payloads.save_reference(conn, job_id, "process", 0, 1, "ingest", 0, [])
    with pytest.raises(StoredChunkMismatch, match="holds 1 records; PostgreSQL read 0"):
        with engine.begin() as conn:
            upsert_stored(conn, CAMPAIGN_PERFORMANCE, job_id=job_id, payload="process",
                          seq=0, unique_keys=True, expected=1)
    close_job(engine, job_id)
