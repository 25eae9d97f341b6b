"""Prometheus metrics at /metrics.

- Requests (counter by method, endpoint, status) and latency (histogram by method, endpoint),
  counted in this API process. Under gunicorn with several processes, set
  PROMETHEUS_MULTIPROC_DIR to an empty directory shared by them (before they start): each
  process then writes its counts there and a scrape of any one of them adds all up
  (prometheus_client's multiprocess mode). Without it, a scrape shows the one process that
  answered it.
- Jobs by status: one GROUP BY on pipeline_jobs at scrape time, so every process agrees.
- Stage runs, records in and out, and durations: added by the workers' runner to the
  pipeline_stage_stats table in the transaction that finishes each stage (tasks/stats.py),
  read at scrape time.

Workers are also seen through Flower's own /metrics (see the README).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import func, select

from tasks import stats
from tasks.storage import db, jobs
from tasks.storage.schema import jobs_table

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# Not in the default registry: /metrics decides how to collect them (one process or many).
REQUESTS = Counter("pipeline_http_requests", "HTTP requests answered by the API",
                   ["method", "endpoint", "status"], registry=None)
LATENCY = Histogram("pipeline_http_request_duration_seconds",
                    "Time to answer an HTTP request, by route", ["method", "endpoint"],
                    buckets=LATENCY_BUCKETS, registry=None)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _observe(response: Response) -> Response:
    started = g.pop("metrics_started", None)
    # The route's pattern, not the path: /api/v1/jobs/<job_id> is one series, not one per job.
    rule = request.url_rule
    endpoint = rule.rule if rule is not None else "unmatched"
    method = request.method if request.method in KNOWN_METHODS else "other"
    REQUESTS.labels(method, endpoint, str(response.status_code)).inc()
    if started is not None:
        LATENCY.labels(method, endpoint).observe(time.perf_counter() - started)
    return response


class PipelineCollector(Collector):
    """Jobs by status and the workers' stage statistics, read from PostgreSQL per scrape."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("pipeline_database_up",
                               "1 when /metrics could read the job tables")
        try:
            with db.get_engine().connect() as conn:
                by_status = dict(conn.execute(
                    select(jobs_table.c.status, func.count()).group_by(jobs_table.c.status)
                ).all())
                stage_stats = stats.read(conn)
        except Exception:  # a scrape must still answer, saying the database is down
            log.warning("metrics: database not readable", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from _job_metrics(by_status)
        yield from _stage_metrics(stage_stats)


def _job_metrics(by_status: dict[str, int]) -> Iterable[Metric]:
    gauge = GaugeMetricFamily("pipeline_jobs", "Jobs in pipeline_jobs by status",
                              labels=["status"])
    for status in dict.fromkeys([jobs.QUEUED, jobs.RUNNING, jobs.SUCCEEDED, jobs.FAILED,
                                 *sorted(by_status)]):
        gauge.add_metric([status], by_status.get(status, 0))
    yield gauge


def _stage_metrics(stage_stats: dict[tuple[str, str, str], stats.StageStats]
                   ) -> Iterable[Metric]:
    labels = ["stage", "data_type", "outcome"]
    runs = CounterMetricFamily("pipeline_stage_runs", "Stage attempts that committed",
                               labels=labels)
    records_in = CounterMetricFamily("pipeline_stage_records_in",
                                     "Records stages took in", labels=labels)
    records_out = CounterMetricFamily("pipeline_stage_records_out",
                                      "Records stages passed on (or stored)", labels=labels)
    durations = HistogramMetricFamily("pipeline_stage_duration_seconds",
                                      "Time a stage attempt took in the worker", labels=labels)
    bounds = [str(b) for b in stats.DURATION_BUCKETS] + ["+Inf"]
    for key, item in sorted(stage_stats.items()):
        values = list(key)
        runs.add_metric(values, item.runs)
        records_in.add_metric(values, item.records_in)
        records_out.add_metric(values, item.records_out)
        durations.add_metric(values, list(zip(bounds, item.buckets, strict=True)),
                             sum_value=item.seconds)
    yield from (runs, records_in, records_out, durations)


class _Exposition(Collector):
    """What one scrape shows: this process's request metrics (or every process's, in
    multiprocess mode) and the database's numbers."""

    def __init__(self) -> None:
        self.database = PipelineCollector()

    def collect(self) -> Iterator[Metric]:
        directory = multiprocess_dir()
        if directory:
            merged = CollectorRegistry()
            MultiProcessCollector(merged, path=directory)
            yield from merged.collect()
        else:
            yield from REQUESTS.collect()
            yield from LATENCY.collect()
        yield from self.database.collect()


_EXPOSITION = _Exposition()


@bp.get("/metrics")
def metrics():  # type: ignore[no-untyped-def]
    """Prometheus text format."""
    return Response(generate_latest(_EXPOSITION), mimetype=None,
                    content_type=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    """Count every request, serve /metrics, and create the stage statistics table."""
    app.before_request(_start_timer)
    app.after_request(_observe)
    app.register_blueprint(bp)
    # Derived numbers only, outside the migrations: made here whatever MIGRATE_ON_START says.
    stats.ensure_table(db.get_engine())
