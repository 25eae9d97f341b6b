"""Structured logs: JSON lines with LOG_FORMAT=json for the API and the worker, and the job id
(and stage) on every line a worker logs while a stage runs, in JSON and in plain text."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest

from tasks import logs
from tasks.celery_app import PIPELINE_STAGES
from tasks.storage import db, jobs
from tasks.submit import accept
from tests.conftest import ROOT, start_worker, stop_worker

JOB_LINE = re.compile(r"job ([0-9a-f-]{36}): stage (\w+) (started|succeeded)")


def _logger(json_lines: bool) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    logger = logging.getLogger(f"test.logs.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(logging.StreamHandler(stream))
    logs.install(logger, json_lines)
    return logger, stream


def test_json_lines_carry_the_job_context_extras_and_tracebacks():
    logger, stream = _logger(json_lines=True)
    logger.info("before")
    with logs.job_context("j-1", "validate", "t-1"):
        logger.warning("inside %s", "the stage", extra={"records": 3})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    logger.info("after")

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["before", "inside the stage", "failed",
                                                   "after"]
    assert "job_id" not in lines[0] and "job_id" not in lines[3]
    inside = lines[1]
    assert (inside["job_id"], inside["stage"], inside["task_id"]) == ("j-1", "validate", "t-1")
    assert inside["level"] == "WARNING" and inside["records"] == 3
    assert inside["logger"] == logger.name and inside["time"].endswith("Z")
    assert lines[2]["job_id"] == "j-1" and "ValueError: boom" in lines[2]["exc_info"]


def test_plain_text_lines_name_the_job_and_stage():
    logger, stream = _logger(json_lines=False)
    logger.info("outside")
    with logs.job_context("j-2", "store"):
        logger.info("inside")
    outside, inside = stream.getvalue().splitlines()
    assert "[job=" not in outside and outside.endswith(f"INFO {logger.name}: outside")
    assert inside.endswith(f"INFO {logger.name} [job=j-2 stage=store]: inside")


def test_the_api_process_logs_json_lines(service_env):
    script = ("import logging; from webapp import create_app; app = create_app(); "
              "logging.getLogger('webapp').warning('api says %s', 'hello'); "
              "app.test_client().get('/healthz')")
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, **service_env, "LOG_FORMAT": "json", "PYTHONPATH": str(ROOT)},
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    lines = [json.loads(line) for line in completed.stderr.splitlines() if line.strip()]
    assert any(line["message"] == "api says hello" and line["logger"] == "webapp"
               for line in lines)


def _run_until_this_worker_ran_a_stage(app, log_path, limit: int = 20) -> set[str]:  # type: ignore[no-untyped-def]
    """Submit small jobs until the worker writing `log_path` ran stages of one (another
    worker of the session may share the queues); returns the ids of the jobs it ran."""
    engine, celery_app = db.get_engine(), app.extensions["celery"]
    for _ in range(limit):
        job = accept(engine, celery_app, kind="pipeline", stages=PIPELINE_STAGES,
                     data_type="campaign_performance", source="meta_ads",
                     data={"records": [{"campaign_id": "log-1", "spend": 1.0}]},
                     records_count=1)
        deadline = time.monotonic() + 30
        while True:
            with engine.connect() as conn:
                status = jobs.get(conn, job["id"])["status"]  # type: ignore[index]
            if status in jobs.FINISHED:
                break
            assert time.monotonic() < deadline, f"job {job['id']} still {status}"
            time.sleep(0.05)
        ran = {m.group(1) for m in JOB_LINE.finditer(log_path.read_text())}
        if ran:
            return ran
    raise AssertionError(f"the worker ran no stage of {limit} jobs")


@pytest.fixture
def worker_log(request, app, service_env, tmp_path):  # type: ignore[no-untyped-def]
    """A worker of its own with LOG_FORMAT as the test's parameter (or (LOG_FORMAT, more
    environment)); yields its log file."""
    log_format, more = request.param if isinstance(request.param, tuple) else (request.param, {})
    log_path = tmp_path / "worker.log"
    env = {**service_env, "LOG_FORMAT": log_format, **more}
    process = start_worker(env, log_path, concurrency=1)
    try:
        _run_until_this_worker_ran_a_stage(app, log_path)
    finally:
        stop_worker(process)
    return log_path


@pytest.mark.parametrize("worker_log", [("json", {"TASK_LOG_LINES": "1"})], indirect=True)
def test_the_worker_logs_json_lines_with_the_job_on_each_stage_line(worker_log):
    records: list[dict[str, Any]] = []
    for line in worker_log.read_text().splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    assert any(r["message"].endswith(" ready.") for r in records)
    stage_lines = [r for r in records if JOB_LINE.search(r["message"])]
    assert stage_lines
    for record in stage_lines:
        job_id, stage, _ = JOB_LINE.search(record["message"]).groups()  # type: ignore[union-attr]
        assert (record["job_id"], record["stage"]) == (job_id, stage), record
        assert record["task_id"]
    # Celery's own line for the finished task, logged in the same task, names the job too.
    traced = [r for r in records if r["logger"] == "celery.app.trace"
              and " succeeded in " in r["message"]]
    assert traced and all(r.get("job_id") for r in traced)


@pytest.mark.parametrize("worker_log", ["text"], indirect=True)
def test_the_worker_logs_one_line_per_carried_stage_and_no_celery_task_lines(worker_log):
    """By default: Celery's received/succeeded line per task is off (TASK_LOG_LINES), and
    a carried stage of a millisecond gets one line, with its duration."""
    text = worker_log.read_text()
    assert JOB_LINE.search(text)
    for logger in logs.CELERY_TASK_LOGGERS:
        assert f" INFO {logger}" not in text
    assert "started (input carried)" not in text
    carried = re.findall(r"stage \w+ succeeded \(output carried\)(.*)", text)
    assert all(re.fullmatch(r" in \d+\.\d ms", tail) for tail in carried), carried


@pytest.mark.parametrize("worker_log", ["text"], indirect=True)
def test_the_worker_plain_text_lines_name_the_job(worker_log):
    lines = [line for line in worker_log.read_text().splitlines() if JOB_LINE.search(line)]
    assert lines
    for line in lines:
        job_id, stage, _ = JOB_LINE.search(line).groups()  # type: ignore[union-attr]
        assert f"[job={job_id} stage={stage}]: " in line, line
