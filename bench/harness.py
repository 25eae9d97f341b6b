"""What the benchmarks share: servers, a fresh database, the API and worker processes.

With DATABASE_URL and CELERY_BROKER_URL set, the benchmarks use those servers (with a
database of their own, `pipeline_bench`); otherwise the private servers under var/bench.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stack.databases import scratch_services  # noqa: E402

BENCH_DATABASE = "pipeline_bench_stack"  # bench_retrieval keeps its 5M rows in pipeline_bench


def machine() -> str:
    return f"{platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()}"


def servers() -> AbstractContextManager[dict[str, str]]:
    """DATABASE_URL and CELERY_BROKER_URL of a fresh bench database and a broker."""
    return scratch_services(ROOT / "var" / "bench", BENCH_DATABASE)


@contextmanager
def running_stack(env: dict[str, str], workers: int = 2, port: int = 5077,
                  api_processes: int = 2, pids: dict[str, int] | None = None) -> Iterator[str]:
    """The API (gunicorn) and a worker as in production; yields the API's base URL.
    `pids`, when given, receives the process ids of the API's and the worker's leaders."""
    logs = ROOT / "var" / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **env, "HOST": "127.0.0.1", "PORT": str(port),
                "WEB_CONCURRENCY": str(api_processes), "WORKER_CONCURRENCY": str(workers)}
    from stack.launcher import api_command, worker_command

    api = subprocess.Popen(api_command(full_env), cwd=ROOT, env=full_env, start_new_session=True,
                           stdout=open(logs / "api.log", "wb"), stderr=subprocess.STDOUT)
    worker = subprocess.Popen(worker_command(beat=False, env=full_env), cwd=ROOT, env=full_env,
                              start_new_session=True,
                              stdout=open(logs / "worker.log", "wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    if pids is not None:
        pids.update(api=api.pid, worker=worker.pid)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if http("GET", f"{base}/readyz")[0] == 200 and b" ready." in (
                        logs / "worker.log").read_bytes():
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the stack did not start; see var/bench-logs")
            time.sleep(0.2)
        yield base
    finally:
        for process in (api, worker):
            os.killpg(process.pid, signal.SIGTERM)
        for process in (api, worker):
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def http(method: str, url: str, body: Any = None, raw: bytes | None = None,
         content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, method=method, data=data,
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_job(base: str, job_id: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, job = http("GET", f"{base}/api/v1/jobs/{job_id}?wait=30")
        if job.get("status") in ("succeeded", "failed"):
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id}: {job}")


def campaign_rows(n: int, start: int = 0, tag: str = "c") -> list[dict[str, Any]]:
    """Canonical campaign_performance rows with distinct natural keys, as users send them."""
    day0 = date(2025, 1, 1)
    return [
        {
            "campaign_id": f"{tag}{(start + i) // 365}",
            "account_id": f"acct-{(start + i) % 7}",
            "campaign_name": f"Campaign {(start + i) // 365}",
            "date": (day0 + timedelta(days=(start + i) % 365)).isoformat(),
            "currency": "EUR",
            "spend": f"{(start + i) % 1000}.{(start + i) % 100:02d}",
            "impressions": 1000 + (start + i) % 5000,
            "clicks": (start + i) % 300,
            "conversions": (start + i) % 20,
            "conversion_value": f"{(start + i) % 2000}.5",
        }
        for i in range(n)
    ]


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def summary(values: Sequence[float]) -> str:
    return (f"p50 {percentile(values, 50) * 1000:.1f} ms · p99 {percentile(values, 99) * 1000:.1f}"
            f" ms · mean {statistics.fmean(values) * 1000:.1f} ms · n={len(values)}")
