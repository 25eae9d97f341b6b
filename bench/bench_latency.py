"""Latency of 1-record jobs, from the POST until the client sees `succeeded`.

Side by side in one run, on the same broker:
  raw   a 4-task no-op Celery chain (JSON, acks late), waited for on the result backend
  ours  POST /api/v1/data_pipeline/ingest with one record, then GET /api/v1/jobs/<id>?wait=10
        (the long poll returns as soon as the job finishes)

    BENCH_JOBS=200 python bench/bench_latency.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from celery import chain
from harness import ROOT, http, machine, running_stack, servers, summary

JOBS = int(os.environ.get("BENCH_JOBS", "200"))
WARMUP = 10


def raw_chain(env: dict[str, str]) -> list[float]:
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
        timings = []
        for n in range(JOBS + WARMUP):
            started = time.perf_counter()
            chain(*(noop_app.step.si(i) for i in range(4))).apply_async().get(timeout=30)
            if n >= WARMUP:
                timings.append(time.perf_counter() - started)
        return timings
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)


def ours(base: str) -> list[float]:
    timings = []
    for n in range(JOBS + WARMUP):
        body = {"source": "generic", "data_type": "campaign_performance", "data": {"records": [
            {"campaign_id": f"lat-{n}", "spend": "12.5", "impressions": 1000, "clicks": 10,
             "conversions": 1, "date": "2025-03-01"}]}}
        started = time.perf_counter()
        status, accepted = http("POST", f"{base}/api/v1/data_pipeline/ingest", body)
        assert status == 202, accepted
        _, job = http("GET", f"{base}/api/v1/jobs/{accepted['job_id']}?wait=10")
        assert job["status"] == "succeeded", job
        if n >= WARMUP:
            timings.append(time.perf_counter() - started)
    return timings


def main() -> None:
    print(f"latency · {JOBS} one-record jobs · {machine()}")
    with servers() as env:
        raw = raw_chain(env)
        with running_stack(env, workers=2) as base:
            our = ours(base)
    raw_p50 = sorted(raw)[len(raw) // 2]
    our_p50 = sorted(our)[len(our) // 2]
    print(f"  raw 4-task no-op chain   {summary(raw)}")
    print(f"  ours, POST → succeeded   {summary(our)}")
    print(f"  ratio of p50s            {our_p50 / raw_p50:.2f}    (target ≤ 2.0)")


if __name__ == "__main__":
    main()
