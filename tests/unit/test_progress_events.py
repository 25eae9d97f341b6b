"""Small stages send no Celery PROGRESS events; large ones do (the job row has both)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tasks import progress


@pytest.fixture
def task(monkeypatch):  # type: ignore[no-untyped-def]
    """A stand-in for the running Celery task, with the app's threshold setting."""
    running = SimpleNamespace(app=SimpleNamespace(conf={
        "pipeline_progress_event_min_records": 1000}))
    monkeypatch.setattr(progress, "_celery_task", lambda: running)
    return running


@pytest.mark.parametrize(("total", "publishes"), [(5, False), (999, False), (1000, True),
                                                  (None, True)])
def test_events_only_from_stages_worth_watching(task, total, publishes):
    tracker = progress.Tracker("job", "store", 1, total)
    assert (tracker._task is task) is publishes
