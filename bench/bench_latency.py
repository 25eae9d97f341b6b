"""Latency of 1-record jobs, from the POST until the client sees `succeeded`.

Side by side in one run, on the same broker:
  raw   a 4-task no-op Celery chain (JSON, acks late), waited for on the result backend
  ours  POST /api/v1/data_pipeline/ingest with one record, then GET /api/v1/jobs/<id>?wait=10
        (the long poll returns as soon as the job finishes), a new connection per request;
        then the same over one kept-alive connection (as requests.Session does), and with
        task events on, as while Flower watches the workers

Each line also gives the CPU time the whole machine spent per job (every process: the
client, the API, the workers, PostgreSQL, Redis), which moves far less than wall time on
a shared machine.

    BENCH_JOBS=200 python bench/bench_latency.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from http.client import HTTPConnection
from typing import Any
from urllib.parse import urlsplit

from celery import Celery, chain
from harness import ROOT, http, machine, percentile, running_stack, servers, summary

JOBS = int(os.environ.get("BENCH_JOBS", "200"))
WARMUP = 10


class Timings(list[float]):
    """Seconds per job, and the machine's busy CPU seconds per job while they ran."""

    cpu_per_job = 0.0


def busy_seconds() -> float:
    """CPU time the machine has spent busy (user, nice, system, irq, softirq)."""
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:8]]
    return (ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]) / os.sysconf("SC_CLK_TCK")


def timed(run: Callable[[int], None]) -> Timings:
    """`run(n)` for the warm-up jobs, then for JOBS jobs, each timed."""
    for n in range(WARMUP):
        run(n)
    timings = Timings()
    busy = busy_seconds()
    for n in range(WARMUP, WARMUP + JOBS):
        started = time.perf_counter()
        run(n)
        timings.append(time.perf_counter() - started)
    timings.cpu_per_job = (busy_seconds() - busy) / JOBS
    return timings


def raw_chain(env: dict[str, str]) -> Timings:
    os.environ["CELERY_BROKER_URL"] = env["CELERY_BROKER_URL"]
    sys.path.insert(0, str(ROOT / "bench"))
    import noop_app

    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "noop_app", "worker", "-Q", "noop", "-c", "2",
         "--without-mingle", "--without-gossip", "--loglevel=WARNING"],
        cwd=ROOT / "bench", env={**os.environ, **env}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        noop_app.step.delay(0).get(timeout=60)  # the worker is up
        return timed(lambda n: chain(*(noop_app.step.si(i) for i in range(4)))
                     .apply_async().get(timeout=30))
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)


Request = Callable[[str, str, Any], tuple[int, dict[str, Any]]]


def kept_alive(base: str) -> Request:
    """Requests over one persistent HTTP/1.1 connection."""
    address = urlsplit(base)
    connection = HTTPConnection(address.hostname, address.port, timeout=60)

    def request(method: str, url: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(url)
        path = f"{parts.path}?{parts.query}" if parts.query else parts.path
        connection.request(method, path, body=json.dumps(body) if body is not None else None,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())

    return request


def ours(base: str, tag: str, request: Request = http) -> Timings:
    def one_job(n: int) -> None:
        body = {"source": "generic", "data_type": "campaign_performance", "data": {"records": [
            {"campaign_id": f"lat-{tag}-{n}", "spend": "12.5", "impressions": 1000,
             "clicks": 10, "conversions": 1, "date": "2025-03-01"}]}}
        status, accepted = request("POST", f"{base}/api/v1/data_pipeline/ingest", body)
        assert status == 202, accepted
        _, job = request("GET", f"{base}/api/v1/jobs/{accepted['job_id']}?wait=10", None)
        assert job["status"] == "succeeded", job

    return timed(one_job)


def task_events(broker_url: str, on: bool) -> None:
    """What Flower does to the workers it watches (and stops doing when it goes)."""
    control = Celery(broker=broker_url).control
    replies = (control.enable_events if on else control.disable_events)(reply=True, timeout=5)
    assert replies, "no worker answered"


def main() -> None:
    print(f"latency · {JOBS} one-record jobs · {machine()}")
    with servers() as env:
        raw = raw_chain(env)
        with running_stack(env, workers=2) as base:
            our = ours(base, "new")
            alive = ours(base, "alive", kept_alive(base))
            task_events(env["CELERY_BROKER_URL"], on=True)
            watched = ours(base, "watched")
            task_events(env["CELERY_BROKER_URL"], on=False)
    raw_p50 = percentile(raw, 50)
    print(f"  raw 4-task no-op chain     {summary(raw)}{cpu(raw)}")
    print(f"  ours, POST → succeeded     {summary(our)}{cpu(our)}")
    print(f"  ratio of p50s              {percentile(our, 50) / raw_p50:.2f}    (target ≤ 2.0)"
          f"   ratio of CPU per job {our.cpu_per_job / raw.cpu_per_job:.2f}")
    print(f"  ours, kept-alive client    {summary(alive)}{cpu(alive)}   ratio "
          f"{percentile(alive, 50) / raw_p50:.2f}")
    print(f"  ours, Flower watching      {summary(watched)}{cpu(watched)}   ratio "
          f"{percentile(watched, 50) / raw_p50:.2f}  (task events on)")


def cpu(timings: Timings) -> str:
    return f" · CPU {timings.cpu_per_job * 1000:.1f} ms/job"


if __name__ == "__main__":
    main()
