"""/metrics: request counts and latency (one process and several under gunicorn), jobs by
status from pipeline_jobs, and the workers' stage statistics."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from tasks import stats
from tasks.storage.schema import jobs_table
from tests.conftest import ROOT

CAMPAIGN = "campaign_performance"


def scrape(client) -> dict[tuple[str, frozenset], float]:  # type: ignore[no-untyped-def]
    """Every sample of /metrics, keyed by (name, labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return parse(response.get_data(as_text=True))


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_requests_are_counted_by_method_route_and_status(client):
    before = scrape(client)
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert client.get(f"/api/v1/jobs/{uuid.uuid4()}").status_code == 404
    assert client.get("/no/such/page").status_code == 404
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("pipeline_http_requests_total", method="GET", endpoint="/healthz",
                 status="200") == 3
    # The route's pattern, not the job id, so series stay few.
    assert delta("pipeline_http_requests_total", method="GET",
                 endpoint="/api/v1/jobs/<job_id>", status="404") == 1
    assert delta("pipeline_http_requests_total", method="GET", endpoint="unmatched",
                 status="404") == 1
    assert delta("pipeline_http_request_duration_seconds_count", method="GET",
                 endpoint="/healthz") == 3
    assert delta("pipeline_http_request_duration_seconds_bucket", method="GET",
                 endpoint="/healthz", le="+Inf") == 3
    assert value(after, "pipeline_database_up") == 1


def test_jobs_by_status_match_the_job_table(client, engine, run_job):
    run_job("ingest", {"source": "meta_ads", "data_type": CAMPAIGN,
                       "data": {"records": [{"campaign_id": "m-1", "spend": 1.0}]}})
    samples = scrape(client)
    with engine.connect() as conn:
        counts = dict(conn.execute(
            select(jobs_table.c.status, func.count()).group_by(jobs_table.c.status)).all())
    assert counts.get("succeeded", 0) >= 1
    for status in ("queued", "running", "succeeded", "failed"):
        assert ("pipeline_jobs", frozenset({("status", status)})) in samples  # always there
        assert value(samples, "pipeline_jobs", status=status) == counts.get(status, 0)


def test_stage_runs_records_and_durations_come_from_the_workers(client, run_job):
    # Stages of earlier tests may still be on their way (a worker writes about once a
    # second): start from counts that have stopped moving.
    def stage_samples() -> dict[tuple[str, frozenset], float]:
        return {k: v for k, v in scrape(client).items() if k[0].startswith("pipeline_stage_")}

    before = stage_samples()
    deadline = time.monotonic() + 30
    while True:
        time.sleep(stats.LINGER_SECONDS + 0.3)
        settled = stage_samples()
        if settled == before:
            break
        assert time.monotonic() < deadline, "stage counters never stopped moving"
        before = settled
    records = [{"campaign_id": f"m-{i}", "spend": 2.0, "clicks": 1} for i in range(7)]
    records.append({"campaign_id": "m-bad", "spend": "not a number"})
    job = run_job("ingest", {"source": "meta_ads", "data_type": CAMPAIGN,
                             "data": {"records": records}})
    assert job["status"] == "succeeded"

    def delta(name: str, stage: str) -> float:
        labels = {"stage": stage, "data_type": CAMPAIGN, "outcome": "succeeded"}
        return value(after, name, **labels) - value(before, name, **labels)

    # Each worker process counts its stages from a thread of its own, about once a second.
    deadline = time.monotonic() + 10
    while True:
        after = scrape(client)
        if (all(delta("pipeline_stage_runs_total", stage) >= 1
                for stage in ("ingest", "validate", "process", "store"))
                or time.monotonic() > deadline):
            break
        time.sleep(0.05)

    for stage in ("ingest", "validate", "process", "store"):
        assert delta("pipeline_stage_runs_total", stage) == 1
        assert delta("pipeline_stage_duration_seconds_count", stage) == 1
        labels = {"stage": stage, "data_type": CAMPAIGN, "outcome": "succeeded", "le": "+Inf"}
        assert (value(after, "pipeline_stage_duration_seconds_bucket", **labels)
                == value(after, "pipeline_stage_runs_total", stage=stage, data_type=CAMPAIGN,
                         outcome="succeeded"))
    assert delta("pipeline_stage_records_in_total", "ingest") == 8
    assert delta("pipeline_stage_records_in_total", "validate") == 8
    assert delta("pipeline_stage_records_out_total", "validate") == 7  # one quarantined
    assert delta("pipeline_stage_records_out_total", "store") == 7


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


@pytest.fixture
def gunicorn(service_env, tmp_path):  # type: ignore[no-untyped-def]
    """The API under gunicorn with 2 processes in prometheus_client's multiprocess mode."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    port = _free_port()
    log = open(tmp_path / "gunicorn.log", "wb")  # closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "webapp:create_app()", "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--worker-class", "sync"],
        cwd=ROOT, env={**os.environ, **service_env, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            _get(base + "/healthz")
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp_path / "gunicorn.log").read_text()[-3000:]) from None
            time.sleep(0.2)
    yield base, directory
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(30)
    log.close()


def _writers(directory: Path) -> set[str]:
    """Processes that have counted a request: prometheus_client keeps a file per process."""
    return {path.stem.rsplit("_", 1)[-1] for path in directory.glob("counter_*.db")}


def test_request_counts_add_up_over_gunicorn_processes(gunicorn):
    base, directory = gunicorn
    sent = 1  # the fixture's readiness poll
    # A new connection each time: the processes share them out. Go on until both have
    # answered some (the second may still be starting), then 20 more.
    deadline = time.monotonic() + 30
    while len(_writers(directory)) < 2:
        assert time.monotonic() < deadline, "one gunicorn process answered everything"
        _get(base + "/healthz")
        sent += 1
    for _ in range(20):
        _get(base + "/healthz")
        sent += 1
    # Every scrape, whichever process answers it, counts the requests of both.
    totals = set()
    for _ in range(6):
        samples = parse(_get(base + "/metrics").decode())
        totals.add(value(samples, "pipeline_http_requests_total", method="GET",
                         endpoint="/healthz", status="200"))
    assert totals == {float(sent)}
    assert len(_writers(directory)) == 2
