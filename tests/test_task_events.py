"""Celery task events: none while nobody watches, and every stage task's once Flower (or
`celery control enable_events`) asks the workers for them, as Flower does on its own."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tasks.celery_app import TASK_NAMES

TASK_EVENTS = ("task-received", "task-started", "task-succeeded")


def _run(client, job_waiter, tag: str) -> str:  # type: ignore[no-untyped-def]
    response = client.post("/api/v1/data_pipeline/ingest", json={
        "source": "generic", "data_type": "campaign_performance",
        "data": {"records": [{"campaign_id": tag, "spend": "1.5", "date": "2025-03-01"}]}})
    job_id = response.get_json()["job_id"]
    assert job_waiter(job_id)["status"] == "succeeded"
    return job_id


def _tasks_of(events: list[dict[str, Any]], job_id: str) -> dict[str, set[str]]:
    """Event types seen per task name, for the tasks of one job."""
    names = {e["uuid"]: e["name"] for e in events
             if e["type"] == "task-received" and job_id in e.get("args", "")}
    seen: dict[str, set[str]] = {name: set() for name in names.values()}
    for event in events:
        if event.get("uuid") in names and event["type"] in TASK_EVENTS:
            seen[names[event["uuid"]]].add(event["type"])
    return seen


def test_workers_send_task_events_only_while_asked_for_them(app, client, job_waiter,
                                                            celery_events):
    control = app.extensions["celery"].control
    _run(client, job_waiter, "events-quiet")
    time.sleep(0.5)  # what a worker would have sent has arrived by now
    assert not [e for e in celery_events if e["type"] in TASK_EVENTS]

    try:
        assert control.enable_events(reply=True, timeout=5), "no worker answered"
        job_id = _run(client, job_waiter, "events-watched")
        deadline = time.monotonic() + 10
        while (_tasks_of(celery_events, job_id)
               != {name: set(TASK_EVENTS) for name in TASK_NAMES.values()}):
            assert time.monotonic() < deadline, _tasks_of(celery_events, job_id)
            time.sleep(0.1)
    finally:
        control.disable_events(reply=True, timeout=5)


def test_task_events_setting_is_a_clear_flag():
    from tasks.settings import Settings, SettingsError

    assert Settings.from_env({}).task_events is False
    assert Settings.from_env({"TASK_EVENTS": "on"}).task_events is True
    assert Settings.from_env({"TASK_EVENTS": "0"}).task_events is False
    with pytest.raises(SettingsError, match="TASK_EVENTS"):
        Settings.from_env({"TASK_EVENTS": "sometimes"})
