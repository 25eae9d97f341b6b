"""Stage statistics for /metrics: runs, records in and out, and durations by stage.

Stages run in worker processes the API cannot see, so the runner adds each finished stage
to a small table after the stage commits, in a short transaction of a thread of its own
(a hot counter row is locked only for an instant, and a counter can never fail or delay
a stage); the stages a process finishes within a second go in one write. The counts
survive restarts (Prometheus counters that never go back); a worker dying before its
thread wrote them loses its last second of counts, never a stage. One row
per (stage, data type, outcome, duration bucket), so a finish touches one row and the
table stays a few hundred rows.

The table is created with CREATE TABLE IF NOT EXISTS by `ensure_table` (called by the app
factory); it holds only derived numbers and may be dropped at any time to reset them.
"""

from __future__ import annotations

import atexit
import bisect
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

TABLE = "pipeline_stage_stats"
# Upper bounds (seconds) of the duration histogram; the last bucket is +Inf.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                    600.0, 1800.0)
SUCCEEDED, FAILED = "succeeded", "failed"
LINGER_SECONDS = 1.0
_warned = False

_CREATE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    stage text NOT NULL,
    data_type text NOT NULL,
    outcome text NOT NULL,
    bucket smallint NOT NULL,
    runs bigint NOT NULL DEFAULT 0,
    records_in bigint NOT NULL DEFAULT 0,
    records_out bigint NOT NULL DEFAULT 0,
    seconds double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (stage, data_type, outcome, bucket)
)
"""
_ADD = text(f"""
INSERT INTO {TABLE} AS s (stage, data_type, outcome, bucket, runs, records_in, records_out,
                          seconds)
VALUES (:stage, :data_type, :outcome, :bucket, :runs, :records_in, :records_out,
        :seconds)
ON CONFLICT (stage, data_type, outcome, bucket) DO UPDATE SET
    runs = s.runs + EXCLUDED.runs,
    records_in = s.records_in + EXCLUDED.records_in,
    records_out = s.records_out + EXCLUDED.records_out,
    seconds = s.seconds + EXCLUDED.seconds
""")


def ensure_table(engine: Engine) -> bool:
    """Create the table if missing; False (logged) when that is not possible, e.g. a
    database user without CREATE: stages then run as usual, uncounted."""
    try:
        with engine.begin() as conn:
            # Two processes starting at once may race on IF NOT EXISTS: serialise them.
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": TABLE})
            conn.exec_driver_sql(_CREATE)
    except Exception:
        log.warning("%s could not be created: stage metrics are off", TABLE, exc_info=True)
        return False
    return True


def bucket_of(seconds: float) -> int:
    """Index of the first bucket whose bound is >= seconds (len(DURATION_BUCKETS) is +Inf)."""
    return bisect.bisect_left(DURATION_BUCKETS, seconds)


class _Writer:
    """Adds finished stages to the table from a thread of its own, off the task's path:
    the next stage's message goes out without waiting for a counter. Stages finished
    within LINGER_SECONDS of the first unwritten one go together, summed per row, so a
    busy worker writes its counters about once a second rather than after every stage
    (each write costs the stage that runs meanwhile a share of the interpreter)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Engine, dict[str, Any]] | None] = \
            queue.SimpleQueue()
        self._pending = 0
        self._idle = threading.Condition()
        self._pid: int | None = None

    def submit(self, engine: Engine, row: dict[str, Any]) -> None:
        with self._idle:
            if self._pid != os.getpid():  # first use in this process (or a forked child)
                self._pid = os.getpid()
                self._pending = 0
                threading.Thread(target=self._run, name="stage-stats", daemon=True).start()
                atexit.register(self.flush)
            self._pending += 1
        self._queue.put((engine, row))

    def flush(self, timeout: float = 5.0) -> bool:
        """Write what was submitted now (no lingering); False when not done in time."""
        self._queue.put(None)  # wakes a lingering writer
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                continue
            batch = [first]
            deadline = time.monotonic() + LINGER_SECONDS
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
                if item is None:  # flush: write now
                    break
                batch.append(item)
            while not self._queue.empty():
                item = self._queue.get()
                if item is not None:
                    batch.append(item)
            _write(batch)
            with self._idle:
                self._pending -= len(batch)
                self._idle.notify_all()


def _summed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per counter row, in key order: two processes adding at once then lock the
    rows they share in the same order and cannot deadlock."""
    sums: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    for row in rows:
        key = (row["stage"], row["data_type"], row["outcome"], row["bucket"])
        total = sums.get(key)
        if total is None:
            sums[key] = {**row, "runs": 1}
            continue
        total["runs"] += 1
        for name in ("records_in", "records_out", "seconds"):
            total[name] += row[name]
    return [sums[key] for key in sorted(sums)]


def _write(batch: list[tuple[Engine, dict[str, Any]]]) -> None:
    try:
        engine = batch[0][0]
        with engine.begin() as conn:
            conn.execute(_ADD, _summed([row for _, row in batch]))
    except Exception:
        global _warned
        if not _warned:  # a missing table would say so on every stage
            log.warning("stage statistics not recorded", exc_info=True)
            _warned = True


_writer = _Writer()


def record_after(engine: Engine, *, stage: str, data_type: str, outcome: str,
                 records_in: int, records_out: int, seconds: float) -> None:
    """Add one finished stage, after the stage committed, in a short transaction of the
    process's stats thread; an error is logged once per process (metrics must never fail
    or delay a job). `flush` waits for what was added."""
    _writer.submit(engine, {
        "stage": stage, "data_type": data_type, "outcome": outcome,
        "bucket": bucket_of(seconds), "records_in": records_in,
        "records_out": records_out, "seconds": max(0.0, seconds),
    })


def flush(timeout: float = 5.0) -> bool:
    """Wait until the stages this process finished are counted (tests, shutdown)."""
    return _writer.flush(timeout)


@dataclass
class StageStats:
    """Totals of one (stage, data type, outcome), with cumulative bucket counts."""

    runs: int = 0
    records_in: int = 0
    records_out: int = 0
    seconds: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))


def read(conn: Connection) -> dict[tuple[str, str, str], StageStats]:
    """Every (stage, data type, outcome) with its totals; {} when the table does not exist."""
    exists = conn.execute(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": TABLE}).scalar()
    if not exists:
        return {}
    out: dict[tuple[str, str, str], StageStats] = {}
    rows = conn.execute(text(
        f"SELECT stage, data_type, outcome, bucket, runs, records_in, records_out, seconds "
        f"FROM {TABLE}")).all()
    for row in rows:
        stats = out.setdefault((row.stage, row.data_type, row.outcome), StageStats())
        stats.runs += row.runs
        stats.records_in += row.records_in
        stats.records_out += row.records_out
        stats.seconds += row.seconds
        stats.buckets[min(row.bucket, len(DURATION_BUCKETS))] += row.runs
    for stats in out.values():
        for i in range(1, len(stats.buckets)):  # cumulative, as Prometheus buckets are
            stats.buckets[i] += stats.buckets[i - 1]
    return out
