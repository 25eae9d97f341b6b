"""Stages read a batch a chunk at a time (bounded memory) and give what they give on the
whole batch at once: the same records on, the same quarantine, the same result, with keys
repeated across chunks found by PostgreSQL. Each stage runs on a real database, once on
a batch stored as one chunk and once on the same batch in chunks of 7 records."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tasks import progress, runner
from tasks.chunks import StageInput
from tasks.ingestion.tasks import ingest_step
from tasks.processing.tasks import process_step
from tasks.runner import run_stage
from tasks.stage import StageOutput
from tasks.storage import jobs, quarantine
from tasks.storage.tasks import store_step
from tasks.validation.tasks import validate_step
from tests.helpers import close_job, stage_output, stored_job

pytestmark = pytest.mark.usefixtures("clean_tables")

SMALL = 7  # records per chunk: the 40-record batches below span 6 chunks


def _records(tag: str) -> list[Any]:
    rows: list[Any] = [
        {"account_id": tag, "campaign_id": f"c{i}", "date": "2025-03-01",
         "spend": str(10 + i), "impressions": 1000, "clicks": 40, "conversions": 2}
        for i in range(36)
    ]
    rows[3]["spend"] = "-5"                     # non_negative
    rows[11]["impressions"] = "many"            # type
    rows[20] = "not an object"                  # object
    rows.append({**rows[2], "spend": "99"})     # repeats c2 (chunk 0) in the last chunk
    rows.append({**rows[30], "spend": "77"})    # repeats c30 within the last chunk
    rows.append({**rows[9], "spend": "55"})     # repeats c9 (chunk 1)
    rows.append({**rows[9], "spend": "56"})     # ... twice
    return rows


def _run(engine: Engine, step: Any, stage: str, data: Any, chunk: int,
         options: dict[str, Any] | None = None, stages: list[str] | None = None,
         ) -> dict[str, Any]:
    stages = stages or [stage, "later"]
    job_id = stored_job(engine, data, stages, options, chunk=chunk)
    summary = run_stage(job_id, stage, step)
    with engine.connect() as conn:
        job = jobs.get(conn, job_id)
        refused = quarantine.page(conn, job_id, 1000, 0)
    assert job is not None
    stage_row = job["stages"][0]
    records = stage_output(engine, job_id, stage)
    close_job(engine, job_id)
    return {
        "summary": summary, "job": job, "stage": stage_row,
        "result": {k: v for k, v in (stage_row["result"] or {}).items()
                   if not k.endswith("_at")},
        "records": records,
        "quarantine": [(r["record_index"], r["record"], r["reasons"]) for r in refused],
    }


def _both(engine: Engine, step: Any, stage: str, data: Any, **kw: Any) -> tuple[dict, dict]:
    whole = _run(engine, step, stage, data, chunk=10_000, **kw)
    chunked = _run(engine, step, stage, data, chunk=SMALL, **kw)
    assert chunked["job"]["status"] == whole["job"]["status"]
    return whole, chunked


def test_validation_in_chunks_equals_validation_at_once(engine: Engine):
    rules = {"required_fields": ["campaign_id", "spend"],
             "rules": [{"rule": "unique", "field": "campaign_id"},
                       {"rule": "row_count", "min": 41},
                       {"rule": "non_negative", "field": "clicks", "mostly": 0.9}]}
    whole, chunked = _both(engine, validate_step, "validate", _records("v"),
                           options={"validation_rules": rules})
    assert chunked["result"] == whole["result"]
    assert chunked["records"] == whole["records"]
    assert chunked["quarantine"] == whole["quarantine"]
    result = chunked["result"]
    unique = next(r for r in result["rules"] if r["rule"] == "unique")
    # c2 at 2 and 36, c9 at 9, 38 and 39, c30 at 30 and 37: every holder of the key fails.
    assert unique["unexpected_index_list"] == [2, 9, 30, 36, 37, 38, 39]
    assert result["invalid_count"] == 10 and result["valid_count"] == 30
    assert [r["success"] for r in result["rules"] if r["rule"] == "row_count"] == [False]
    assert [q[0] for q in chunked["quarantine"]] == [2, 3, 9, 11, 20, 30, 36, 37, 38, 39]


def test_reject_batch_over_chunks_fails_the_job_and_keeps_the_quarantine(engine: Engine):
    rules = {"on_invalid": "reject_batch"}
    whole, chunked = _both(engine, validate_step, "validate", _records("r"),
                           options={"validation_rules": rules})
    for ran in (whole, chunked):
        assert ran["job"]["status"] == "failed"
        assert ran["job"]["error"]["code"] == "validation_failed"
        assert ran["records"] == []  # nothing goes on
        assert [q[0] for q in ran["quarantine"]] == [3, 11, 20]
    assert chunked["job"]["error"] == whole["job"]["error"]


def test_process_dedups_across_chunks_with_the_last_record_winning(engine: Engine):
    data = [r for r in _records("p") if isinstance(r, dict) and r["spend"] != "-5"]
    whole, chunked = _both(engine, process_step, "process", data,
                           options={"processing_options": {"calculate_metrics": True}})
    assert chunked["result"] == whole["result"]
    assert chunked["result"]["duplicates_removed"] == 4
    assert chunked["quarantine"] == whole["quarantine"]  # "many" impressions, by index

    def by_key(records: list[dict[str, Any]]) -> dict[str, Any]:
        return {r["campaign_id"]: r for r in records}

    assert by_key(chunked["records"]) == by_key(whole["records"])
    last = by_key(chunked["records"])
    assert (last["c2"]["spend"], last["c9"]["spend"], last["c30"]["spend"]) == (
        "99", "56", "77")


def test_store_over_chunks_counts_exactly_and_keeps_the_last_record(engine: Engine):
    data = [r for r in _records("s") if isinstance(r, dict)]
    whole = _run(engine, store_step, "store", data, chunk=10_000, stages=["store"])
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM campaign_performance WHERE account_id = 's'"))
    chunked = _run(engine, store_step, "store", data, chunk=SMALL, stages=["store"])
    assert chunked["result"] == whole["result"]
    assert chunked["result"]["inserted"] == 35 - 1  # "many" impressions; no updates
    assert chunked["result"]["duplicates_in_batch"] == 4
    assert chunked["quarantine"] == whole["quarantine"]
    with engine.connect() as conn:
        spends = dict(conn.execute(text(
            "SELECT campaign_id, spend FROM campaign_performance WHERE account_id = 's'"
            " AND campaign_id IN ('c2', 'c9', 'c30')")).all())
    assert {k: str(v) for k, v in spends.items()} == {"c2": "99", "c9": "56", "c30": "77"}


def test_ingest_in_chunks_and_a_whole_platform_response(engine: Engine):
    whole, chunked = _both(engine, ingest_step, "ingest", _records("i"))
    assert chunked["result"] == whole["result"]
    assert chunked["records"] == whole["records"]
    assert chunked["quarantine"] == whole["quarantine"] == [
        (20, "not an object", [{"rule": "object", "field": None, "value": None,
                                "message": "record is not a JSON object"}])]
    response = {"records": [{"campaign_id": "m1", "spend": "1.5"}]}  # stored whole
    native = _run(engine, ingest_step, "ingest", response, chunk=SMALL)
    assert native["job"]["stages"][0]["status"] == "succeeded"
    assert [r["campaign_id"] for r in native["records"]] == ["m1"]


def test_a_stage_reads_one_chunk_at_a_time_and_reports_progress_across_them(engine, monkeypatch):
    monkeypatch.setattr(progress, "MIN_INTERVAL_SECONDS", 0.0)
    monkeypatch.setattr(runner, "ONE_TRANSACTION_RECORDS", 0)  # a claimed, long stage
    job_id = stored_job(engine, [{"campaign_id": f"g{i}"} for i in range(30)],
                        ["validate", "later"], chunk=SMALL)
    seen: list[tuple[int, int, Any]] = []

    def step(conn: Any, job: dict[str, Any], source: StageInput, sink: Any) -> StageOutput:
        assert source.chunk_count == 5 and source.spans_chunks
        for offset, chunk in source.chunks():
            with engine.connect() as other:
                done = jobs.get(other, job_id)["progress"]["records_done"]
            seen.append((offset, len(chunk), done))
            sink.write(chunk)
        return StageOutput(records=[], result={}, records_in=30)

    assert run_stage(job_id, "validate", step)["records_out"] == 30
    assert seen == [(0, 7, 0), (7, 7, 7), (14, 7, 14), (21, 7, 21), (28, 2, 28)]
    assert len(stage_output(engine, job_id, "validate")) == 30
    close_job(engine, job_id)


def _die_in_the_middle(job_id: str, database_url: str) -> None:
    """A worker that claims a short stage, writes its output, then is killed (SIGKILL)."""
    import os
    import signal

    from tasks.storage import db

    db.dispose_after_fork()
    db.configure(database_url)

    def step(conn: Any, job: dict[str, Any], source: StageInput, sink: Any) -> StageOutput:
        sink.write([r for _, chunk in source.chunks() for r in chunk])
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")

    run_stage(job_id, "validate", step)


def test_a_short_stage_killed_mid_transaction_leaves_no_trace_and_runs_again(engine: Engine):
    """A stage of one chunk holds the job row from its claim to its commit: killed in
    between, it leaves the job as it was (no claim, no output), and the next delivery
    runs it."""
    import multiprocessing

    job_id = stored_job(engine, [{"campaign_id": "k1"}, {"campaign_id": "k2"}],
                        ["validate", "later"])
    with engine.connect() as conn:
        before = jobs.get(conn, job_id)
    worker = multiprocessing.get_context("fork").Process(
        target=_die_in_the_middle, args=(job_id, engine.url.render_as_string(False)))
    worker.start()
    worker.join(30)
    assert worker.exitcode == -9
    with engine.connect() as conn:
        after = jobs.get(conn, job_id)
    assert after == before  # no claim, no attempt, no status change
    assert stage_output(engine, job_id, "validate") == []
    assert run_stage(job_id, "validate", validate_step)["records_out"] == 2
    assert len(stage_output(engine, job_id, "validate")) == 2
    close_job(engine, job_id)


def test_a_store_over_many_chunks_holds_as_many_locks_as_over_a_few(engine: Engine):
    """Each chunk's upsert reuses one temporary table: a file of millions of records
    must not hold a table's locks per chunk until it commits."""
    held = []
    for chunks in (3, 30):
        data = [{"account_id": f"locks-{chunks}", "campaign_id": f"c{i}", "date": "2025-03-02",
                 "spend": "1"} for i in range(chunks * SMALL)]
        job_id = stored_job(engine, data, ["store"], chunk=SMALL)

        def step(conn: Any, job: dict[str, Any], source: StageInput, sink: Any) -> StageOutput:
            output = store_step(conn, job, source, sink)
            held.append(conn.exec_driver_sql(
                "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()").scalar())
            return output

        assert run_stage(job_id, "store", step)["records_out"] == 0
        with engine.connect() as conn:
            assert jobs.get(conn, job_id)["result"]["inserted"] == chunks * SMALL
    assert held[0] == held[1]
