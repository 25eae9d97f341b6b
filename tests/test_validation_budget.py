"""A validation rule that makes the check of a chunk take far too long (a regex that
backtracks catastrophically) fails its job at once, saying why, instead of holding a
worker (and starving its heartbeat) until the task's time limit."""

from __future__ import annotations

import re
import time

import pytest

from tasks.runner import run_stage
from tasks.storage import jobs
from tasks.time_budget import OverBudget, time_budget
from tasks.validation import tasks as validation_tasks
from tasks.validation.tasks import validate_step
from tests.helpers import stored_job

pytestmark = pytest.mark.usefixtures("clean_tables")

CATASTROPHIC = "(a+)+$"  # on "aaa…ab": 2**n ways to fail


def test_the_budget_interrupts_a_regular_expression():
    started = time.monotonic()
    with pytest.raises(OverBudget), time_budget(0.2):
        re.search(CATASTROPHIC, "a" * 40 + "b")
    assert time.monotonic() - started < 2


def test_a_catastrophic_regex_rule_fails_its_job_as_too_slow(engine, monkeypatch):
    monkeypatch.setattr(validation_tasks, "CHUNK_SECONDS", 0.5)
    rules = {"rules": [{"rule": "regex", "field": "campaign_id", "pattern": CATASTROPHIC}]}
    records = [{"campaign_id": "a" * 40 + "b", "date": "2025-03-01"}]
    job_id = stored_job(engine, records, ["validate"], {"validation_rules": rules})
    started = time.monotonic()
    outcome = run_stage(job_id, "validate", validate_step)
    assert time.monotonic() - started < 10
    assert outcome["failed"] == "validation_too_slow"
    with engine.connect() as conn:
        job = jobs.get(conn, job_id)
    assert job is not None and job["status"] == jobs.FAILED
    assert "backtracks catastrophically" in job["error"]["message"]
