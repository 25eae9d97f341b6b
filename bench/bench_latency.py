"""Latency of 1-record jobs, from the POST until the client sees `succeeded`.

Side by side in one run, on the same broker:
  raw   a 4-task no-op Celery chain (JSON, acks late), waited for on the result backend
  ours  POST /api/v1/data_pipeline/ingest with one record, then GET /api/v1/jobs/<id>?wait=10
        (the long poll returns as soon as the job finishes), a new connection per request;
        then the same over one kept-alive connection (as requests.Session does), and with
        task events on, as while Flower watches the workers

Both stacks run for the whole run and the ways take turns in BENCH_ROUNDS blocks each,
in reverse order every other round, so that a shared machine slowing down or speeding up
during the run weighs on all of them alike. The ways with task events on run after the
others, in the same way, with the raw chain's worker sending events too (Flower turns
them on in every worker of a broker): turning events off disturbed the block after it.
Why blocks, and why this order (measured on the project's machine, tenth and eleventh
sessions): with the same order every round, two stacks of the same code read 3-4 % apart
at p50, and the raw chain, which came first after events were turned off, read slower;
jobs taking turns one by one put each raw chain right after one of our jobs, whose
worker is still acknowledging, counting and logging, and flattered us by about 10 %.
Each line also gives the CPU time the whole machine spent per job (every process: the
client, the API, the workers, PostgreSQL, Redis), which moves far less than wall time
on a shared machine.

    BENCH_JOBS=200 BENCH_ROUNDS=4 python bench/bench_latency.py
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import HTTPConnection
from typing import Any
from urllib.parse import urlsplit

from celery import Celery, chain
from harness import ROOT, http, machine, percentile, running_stack, servers, summary

JOBS = int(os.environ.get("BENCH_JOBS", "200"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "4"))
WARMUP = 10


class Timings(list[float]):
    """Seconds per job, and the machine's busy CPU seconds per job while they ran (and
    the way's own processes' CPU seconds, when the way can tell them)."""

    busy = 0.0
    own = 0.0

    @property
    def cpu_per_job(self) -> float:
        return self.busy / len(self)


def busy_seconds() -> float:
    """CPU time the machine has spent busy (user, nice, system, irq, softirq)."""
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:8]]
    return (ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]) / os.sysconf("SC_CLK_TCK")


@dataclass
class Way:
    """One way of running a job: `run(n)` runs job number n; `events`: task events on;
    `cpu()`: the CPU seconds its own processes have spent so far."""

    name: str
    run: Callable[[int], None]
    events: bool = False
    cpu: Callable[[], float] | None = None


def take_turns(ways: list[Way], set_events: Callable[[bool], None]) -> dict[str, Timings]:
    """WARMUP jobs of each way, then JOBS timed jobs of each in ROUNDS blocks, the ways
    taking turns block by block, in reverse order every other round; the ways with task
    events on after the others, events on while they run. CPU is read per block, so that
    what a job's processes do after its client has the answer counts for its way."""
    timings = {way.name: Timings() for way in ways}
    done = dict.fromkeys(timings, 0)
    for events in (False, True):
        group = [way for way in ways if way.events == events]
        if not group:
            continue
        if events:
            set_events(True)
        try:
            for round_ in range(-1, ROUNDS):  # round -1: the warm-up
                for way in group if round_ % 2 == 0 else group[::-1]:
                    count = WARMUP if round_ < 0 else JOBS // ROUNDS + (round_ < JOBS % ROUNDS)
                    block: list[float] = []
                    busy, own = busy_seconds(), way.cpu() if way.cpu else 0.0
                    for n in range(done[way.name], done[way.name] + count):
                        started = time.perf_counter()
                        way.run(n)
                        block.append(time.perf_counter() - started)
                    done[way.name] += count
                    if round_ >= 0:
                        timings[way.name] += block
                        timings[way.name].busy += busy_seconds() - busy
                        if way.cpu:
                            timings[way.name].own += way.cpu() - own
        finally:
            if events:
                set_events(False)
    return timings


@contextmanager
def raw_chain(env: dict[str, str]) -> Iterator[Callable[[int], None]]:
    """A worker of the no-op app; yields how to run one 4-task chain and wait for it."""
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
        yield lambda n: chain(*(noop_app.step.si(i) for i in range(4))).apply_async().get(
            timeout=30)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)


Request = Callable[[str, str, Any], tuple[int, dict[str, Any]]]


def kept_alive(base: str) -> Request:
    """Requests over one persistent HTTP/1.1 connection, opened again when the server
    has closed it (idle past its keep-alive while the other ways ran), as urllib3 does."""
    address = urlsplit(base)
    connection = HTTPConnection(address.hostname, address.port, timeout=60)

    def request(method: str, url: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        if connection.sock is not None and select.select([connection.sock], [], [], 0)[0]:
            connection.close()  # readable while idle: the server's end of the stream
        parts = urlsplit(url)
        path = f"{parts.path}?{parts.query}" if parts.query else parts.path
        connection.request(method, path, body=json.dumps(body) if body is not None else None,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())

    return request


def ours(base: str, tag: str, request: Request = http) -> Callable[[int], None]:
    """How to run our job number n: the POST, then the long poll until it has succeeded."""

    def one_job(n: int) -> None:
        body = {"source": "generic", "data_type": "campaign_performance", "data": {"records": [
            {"campaign_id": f"lat-{tag}-{n}", "spend": "12.5", "impressions": 1000,
             "clicks": 10, "conversions": 1, "date": "2025-03-01"}]}}
        status, accepted = request("POST", f"{base}/api/v1/data_pipeline/ingest", body)
        assert status == 202, accepted
        _, job = request("GET", f"{base}/api/v1/jobs/{accepted['job_id']}?wait=10", None)
        assert job["status"] == "succeeded", job

    return one_job


def task_events(broker_url: str, on: bool) -> None:
    """What Flower does to the workers it watches (and stops doing when it goes)."""
    control = Celery(broker=broker_url).control
    replies = (control.enable_events if on else control.disable_events)(reply=True, timeout=5)
    assert replies, "no worker answered"


def main() -> None:
    print(f"latency · {JOBS} one-record jobs per way, in {ROUNDS} rounds · {machine()}")
    with servers() as env, raw_chain(env) as raw, running_stack(env, workers=2) as base:
        timings = take_turns([
            Way("raw", raw),
            Way("ours", ours(base, "new")),
            Way("alive", ours(base, "alive", kept_alive(base))),
            Way("raw watched", raw, events=True),
            Way("watched", ours(base, "watched"), events=True),
        ], lambda on: task_events(env["CELERY_BROKER_URL"], on))
    raw, our, alive, raw_watched, watched = (
        timings[name] for name in ("raw", "ours", "alive", "raw watched", "watched"))
    raw_p50 = percentile(raw, 50)
    print(f"  raw 4-task no-op chain     {summary(raw)}{cpu(raw)}")
    print(f"  ours, POST → succeeded     {summary(our)}{cpu(our)}")
    print(f"  ratio of p50s              {percentile(our, 50) / raw_p50:.2f}    (target ≤ 2.0)"
          f"   ratio of CPU per job {our.cpu_per_job / raw.cpu_per_job:.2f}")
    print(f"  ours, kept-alive client    {summary(alive)}{cpu(alive)}   ratio "
          f"{percentile(alive, 50) / raw_p50:.2f}")
    print("  task events on (Flower watching every worker):")
    print(f"  raw chain                  {summary(raw_watched)}{cpu(raw_watched)}")
    print(f"  ours                       {summary(watched)}{cpu(watched)}   ratio "
          f"{percentile(watched, 50) / percentile(raw_watched, 50):.2f}")


def cpu(timings: Timings) -> str:
    return f" · CPU {timings.cpu_per_job * 1000:.1f} ms/job"


if __name__ == "__main__":
    main()
