"""Long polling without polling: PostgreSQL tells the API when a job finishes.

A trigger on the job row's status (migration 0006) sends `NOTIFY pipeline_job_done,
'<job id>'` in the statement that finishes or fails a job, whichever code path runs it,
so the notice arrives exactly when the new status is visible. Each API process keeps
one listening connection in a thread and wakes the requests waiting on that job. A
missed notice (a reconnect) costs at most the re-check interval, never a wrong answer:
waiters always re-read the job row.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Engine

from tasks.storage.jobs import JOB_DONE_CHANNEL

log = logging.getLogger(__name__)
RECHECK_SECONDS = 1.0


class JobWatcher:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._waiters: dict[str, set[threading.Event]] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._listen, name="job-events", daemon=True)
        self._thread.start()

    @contextmanager
    def watch(self, job_id: str) -> Iterator[threading.Event]:
        """An event set when `job_id` finishes; register it before reading the job."""
        event = threading.Event()
        with self._lock:
            self._waiters.setdefault(job_id, set()).add(event)
        try:
            yield event
        finally:
            with self._lock:
                events = self._waiters.get(job_id)
                if events is not None:
                    events.discard(event)
                    if not events:
                        del self._waiters[job_id]

    def _wake(self, job_id: str) -> None:
        with self._lock:
            for event in self._waiters.get(job_id, ()):
                event.set()

    def _listen(self) -> None:
        delay = 0.5
        while True:
            try:
                raw = self._engine.raw_connection()
                raw.detach()  # a connection of its own, outside the pool
                conn = raw.dbapi_connection
                conn.autocommit = True
                with conn.cursor() as cursor:
                    cursor.execute(f"LISTEN {JOB_DONE_CHANNEL}")  # a constant name
                delay = 0.5
                while True:
                    ready, _, _ = select.select([conn], [], [], 30)
                    conn.poll()
                    while conn.notifies:
                        self._wake(conn.notifies.pop(0).payload)
                    if not ready:  # idle: make sure the connection is still there
                        with conn.cursor() as cursor:
                            cursor.execute("SELECT 1")
            except Exception:  # the database went away: waiters fall back to re-checking
                log.warning("job events: listener lost its connection; reconnecting",
                            exc_info=True)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)


_watchers: dict[int, JobWatcher] = {}
_watchers_lock = threading.Lock()


def watcher_for(engine: Engine) -> JobWatcher:
    """This process's watcher for `engine`, started on first use (after any fork)."""
    with _watchers_lock:
        watcher = _watchers.get(id(engine))
        if watcher is None:
            watcher = _watchers[id(engine)] = JobWatcher(engine)
        return watcher
