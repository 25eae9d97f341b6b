"""Progress of a running stage: on the job row, where GET /api/v1/jobs/<id> shows it as
`progress`, and as the Celery custom state PROGRESS, which Flower shows.

The runner writes it when a stage starts (records_total known) and when it ends. In between,
a stage core that works in chunks calls `report(records_done)` after each chunk: a no-op
outside a running stage, so a core stays a plain function callable from anywhere.

    from tasks import progress
    for start in range(0, len(records), CHUNK):
        ...
        progress.report(start + CHUNK)
"""

from __future__ import annotations

import logging
import threading
import time
from contextvars import ContextVar
from typing import Any

from tasks.storage import db, jobs

log = logging.getLogger(__name__)

PROGRESS_STATE = "PROGRESS"
PROGRESS_EVENT = "task-progress"  # Flower turns a task-<x> event into the state <X>
# Per-chunk reports closer together than this are not written (the row is locked to write).
MIN_INTERVAL_SECONDS = 0.5

_current: ContextVar[Tracker | None] = ContextVar("pipeline_progress", default=None)


def report(records_done: int) -> None:
    """Called by a core after each chunk; does nothing outside a running stage. Counts are
    within the chunk of the batch the stage is working on (see `enter_chunk`)."""
    tracker = _current.get()
    if tracker is not None:
        tracker.update(tracker.base + records_done)


def enter_chunk(offset: int) -> None:
    """The stage starts on the chunk whose first record is the batch's `offset`-th: what
    a core reports from now on counts from there."""
    tracker = _current.get()
    if tracker is not None:
        tracker.base = offset
        if offset:
            tracker.update(offset)


def _celery_task() -> Any:
    """The Celery task running in this thread, if any (so a stage run outside a worker still
    reports to the job row)."""
    try:
        from celery import current_task
    except ImportError:  # pragma: no cover - celery is a runtime dependency
        return None
    task = current_task._get_current_object() if current_task else None
    if task is None or task.request.called_directly or not task.request.id:
        return None
    return task


class Tracker:
    """The progress of one attempt of one stage; a context manager that makes it the target of
    `report` and publishes the start and end to Celery."""

    def __init__(self, job_id: str, stage: str, attempt: int, total: int | None,
                 min_interval: float | None = None, write_row: bool = True) -> None:
        self.job_id, self.stage, self.attempt = job_id, stage, attempt
        # False while the stage's own transaction holds the job row: a write from another
        # connection would wait for it forever.
        self.write_row = write_row
        self.total = total
        self.done = 0
        self.base = 0  # records of the batch before the chunk being worked on
        self.min_interval = MIN_INTERVAL_SECONDS if min_interval is None else min_interval
        self._last_write = 0.0
        self._lock = threading.Lock()
        task = _celery_task()
        # Events for Flower only where there is something to watch: a small stage is over
        # before anyone could look, and two broker round trips would double its latency.
        minimum = int(task.app.conf.get("pipeline_progress_event_min_records") or 0) \
            if task is not None else 0
        self._task = task if total is None or total >= minimum else None
        self._token: Any = None

    def __enter__(self) -> Tracker:
        self._token = _current.set(self)
        self._publish(jobs.progress_snapshot(self.stage, 0, self.total))
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        _current.reset(self._token)
        if exc_type is None:
            self._publish(jobs.progress_snapshot(self.stage, self.total or self.done, self.total))

    def update(self, records_done: int) -> None:
        with self._lock:
            self.done = records_done
            now = time.monotonic()
            if now - self._last_write < self.min_interval:
                return
            self._last_write = now
        progress = jobs.progress_snapshot(self.stage, records_done, self.total)
        if not self.write_row:
            self._publish(progress)
            return
        try:
            # A short transaction of its own: the stage's own transaction is uncommitted.
            with db.get_engine().begin() as conn:
                jobs.heartbeat(conn, self.job_id, self.stage, self.attempt, progress=progress)
        except Exception:  # progress is advisory: never fail a stage for it
            log.warning("job %s: progress not recorded", self.job_id, exc_info=True)
        self._publish(progress)

    def _publish(self, progress: dict[str, Any]) -> None:
        """The PROGRESS state: an event for Flower, and the result backend when there is one."""
        task = self._task
        if task is None:
            return
        meta = {"job_id": self.job_id, **progress}
        try:
            # Sent whether or not the worker sends task events now (Flower may turn those
            # on at any time; the child process cannot tell): a stage big enough to watch
            # sends only a few, and a publish nobody subscribes to costs next to nothing.
            if task.request.hostname:
                task.send_event(PROGRESS_EVENT, retry=False, **meta)
            if not task.ignore_result and task.app.conf.result_backend:
                task.update_state(state=PROGRESS_STATE, meta=meta)
        except Exception:  # a broker hiccup must not fail the stage
            log.warning("job %s: progress not published to Celery", self.job_id,
                        exc_info=True)
