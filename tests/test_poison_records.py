"""A stage whose worker dies every time it runs it (as a record that crashes the worker
process makes it do) is counted on each redelivery, and stops its job after the limit with
a clear error instead of crashing worker after worker for ever. Retries after database
errors are not counted."""

from __future__ import annotations

import multiprocessing
import os
import signal
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from tasks import runner
from tasks.chunks import StageInput
from tasks.runner import INTERRUPTED, run_celery_stage, run_stage
from tasks.stage import StageOutput
from tasks.storage import db, jobs
from tasks.validation.tasks import validate_step
from tests.helpers import close_job, stage_output, stored_job

pytestmark = pytest.mark.usefixtures("clean_tables")

POISONED_MESSAGE = "the-poisoned-message"  # a redelivered message keeps its task id


def _crash_while_running(job_id: str, database_url: str, max_restarts: int) -> None:
    """A worker that runs the stage of a redelivered message and dies in the middle."""
    db.dispose_after_fork()
    db.configure(database_url)

    def step(conn: Any, job: dict[str, Any], source: StageInput, sink: Any) -> StageOutput:
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")

    run_stage(job_id, "validate", step, claimant=POISONED_MESSAGE, redelivered=True,
              max_restarts=max_restarts)


def _validate_stage(engine: Engine, job_id: str) -> tuple[str, dict[str, Any]]:
    with engine.connect() as conn:
        job = jobs.get(conn, job_id)
    assert job is not None
    return job["status"], next(s for s in job["stages"] if s["name"] == "validate")


def test_each_redelivery_of_a_stage_counts_and_the_limit_stops_the_job(engine):
    job_id = stored_job(engine, [{"campaign_id": "poison"}], ["validate", "later"])
    url = engine.url.render_as_string(hide_password=False)
    for restarts in (1, 2, 3):
        worker = multiprocessing.get_context("fork").Process(
            target=_crash_while_running, args=(job_id, url, 3))
        worker.start()
        worker.join(30)
        assert worker.exitcode == -signal.SIGKILL
        status, stage = _validate_stage(engine, job_id)
        assert (status, stage["status"], stage["restarts"]) == ("running", "running", restarts)

    outcome = run_stage(job_id, "validate", validate_step, claimant=POISONED_MESSAGE,
                        redelivered=True, max_restarts=3)
    assert outcome["failed"] == INTERRUPTED
    with engine.connect() as conn:
        job = jobs.get(conn, job_id)
    assert job["status"] == "failed"
    assert job["error"]["code"] == INTERRUPTED
    assert job["error"]["details"] == {"restarts": 4}
    assert "came back 4 times" in job["error"]["message"]
    assert stage_output(engine, job_id, "raw") == [{"campaign_id": "poison"}]  # kept


def test_retries_after_database_errors_do_not_count(engine, monkeypatch):
    """A long stage commits its claim on every try; a database outage retried by Celery
    must not stop the job however many tries it takes."""
    monkeypatch.setattr(runner, "ONE_TRANSACTION_RECORDS", 0)  # every claim committed
    job_id = stored_job(engine, [{"campaign_id": "outage"}], ["validate", "later"])

    def step(conn: Any, job: dict[str, Any], source: StageInput, sink: Any) -> StageOutput:
        raise OperationalError("SELECT 1", {}, Exception("the server went away"))

    for _ in range(3):
        with pytest.raises(OperationalError):
            run_stage(job_id, "validate", step, claimant="retried-task", max_restarts=1)
    assert run_stage(job_id, "validate", validate_step, claimant="retried-task",
                     max_restarts=1)["records_out"] == 1
    status, stage = _validate_stage(engine, job_id)
    assert (stage["status"], stage["attempt"], stage.get("restarts", 0)) == ("succeeded", 4, 0)
    close_job(engine, job_id)


def _task(redelivered: bool) -> SimpleNamespace:
    """What run_celery_stage reads of a Celery task: its settings and the delivery."""
    return SimpleNamespace(
        app=SimpleNamespace(conf={"pipeline_max_stage_restarts": 5}),
        request=SimpleNamespace(id=f"task-{redelivered}", retries=0,
                                delivery_info={"exchange": "", "routing_key": "pipeline",
                                               "redelivered": redelivered}),
        max_retries=8,
    )


@pytest.mark.parametrize("redelivered", [False, True])
def test_only_a_redelivered_message_commits_its_claim_before_working(engine, redelivered):
    """A first delivery of a one-chunk stage claims it in its own transaction (nothing to
    count if it dies); a redelivery commits the claim first, so that its start counts."""
    job_id = stored_job(engine, [{"campaign_id": f"claim-{redelivered}"}],
                        ["validate", "later"])
    seen: list[str] = []

    def step(conn: Any, job: dict[str, Any], source: StageInput, sink: Any) -> StageOutput:
        seen.append(_validate_stage(engine, job_id)[1]["status"])  # from another connection
        return validate_step(conn, job, source, sink)

    assert run_celery_stage(_task(redelivered), job_id, "validate", step)["records_out"] == 1
    assert seen == ["running" if redelivered else "pending"]
    close_job(engine, job_id)
