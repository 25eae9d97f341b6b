"""Latency A/B: one-record jobs through two checkouts of this project, side by side.

A change worth a millisecond cannot be seen by running the latency bench before and after
it: on a shared machine the run-to-run drift is larger. Here both stacks (API and worker
of checkout A, API and worker of checkout B) run at once, on the same PostgreSQL server
(a database each) and the same Redis (a database each, so neither worker takes the other's
messages), and their jobs take turns in blocks, as bench_latency.py's ways do.

    python bench/ab_latency.py ../old-checkout            # A: that checkout, B: this one
    python bench/ab_latency.py ../old-checkout ../other   # A and B named

Make checkout A with `git worktree add ../old-checkout <commit>`; both run with this
Python and its packages, unless AB_PYTHON_A or AB_PYTHON_B names another interpreter for
that stack (a virtualenv with other package versions: `python bench/ab_latency.py . .`
with AB_PYTHON_A set compares an upgrade on the same code). BENCH_JOBS and BENCH_ROUNDS
as for bench_latency.py. Prints each stack's p50 and p99, the CPU its API and worker
processes spent per job, and B over A.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil
from bench_latency import Way, ours, take_turns
from harness import ROOT, http, machine, percentile, servers, summary

from stack.databases import create_database

# Redis databases of the two stacks' brokers (the tests use 15, the benches 13).
BROKER_DATABASES = {"A": 11, "B": 12}


def broker_url(url: str, database: int) -> str:
    """`url` with its Redis database set: the path of redis://, a query of a socket's URL."""
    parts = urlsplit(url)
    if parts.scheme.endswith("socket"):  # no host, which urlunsplit would drop with its //
        return f"{url.partition('?')[0]}?virtual_host={database}"
    return urlunsplit(parts._replace(path=f"/{database}"))


def stack_processes(pids: list[int]) -> list[psutil.Process]:
    """The processes `pids` and every process below them."""
    roots = [psutil.Process(pid) for pid in pids]
    return [p for root in roots for p in (root, *root.children(recursive=True))]


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """CPU time `processes` have spent (those still running)."""
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


@contextmanager
def stack_of(checkout: Path, name: str, env: dict[str, str],
             port: int) -> Iterator[tuple[str, list[int]]]:
    """The API and a worker of `checkout`, on a database and a Redis database of their
    own; yields the API's base URL and the two process ids."""
    full_env = {
        **os.environ, "HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "2",
        "WORKER_CONCURRENCY": "2",
        "DATABASE_URL": create_database(env["DATABASE_URL"], f"bench_ab_{name.lower()}"),
        "CELERY_BROKER_URL": broker_url(env["CELERY_BROKER_URL"], BROKER_DATABASES[name]),
    }
    python = os.environ.get(f"AB_PYTHON_{name}") or sys.executable
    # The checkout's own commands and schema, asked of its own code and interpreter.
    commands = subprocess.run(
        [python, "-c",
         "import json, os; from stack.launcher import api_command, migrate, worker_command; "
         "migrate(os.environ); "
         "print(json.dumps([api_command(os.environ), worker_command(False, os.environ)]))"],
        cwd=checkout, env=full_env, capture_output=True, text=True, timeout=300, check=True)
    api_command, worker_command = json.loads(commands.stdout.strip().splitlines()[-1])
    logs = ROOT / "var" / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    worker_log = logs / f"ab-{name}-worker.log"
    processes = [
        subprocess.Popen(api_command, cwd=checkout, env=full_env, start_new_session=True,
                         stdout=open(logs / f"ab-{name}-api.log", "wb"),
                         stderr=subprocess.STDOUT),
        subprocess.Popen(worker_command, cwd=checkout, env=full_env, start_new_session=True,
                         stdout=open(worker_log, "wb"), stderr=subprocess.STDOUT),
    ]
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if http("GET", f"{base}/readyz")[0] == 200 and b" ready." in \
                        worker_log.read_bytes():
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"stack {name} did not start; see {logs}")
            time.sleep(0.2)
        yield base, [p.pid for p in processes]
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def main() -> None:
    if not 2 <= len(sys.argv) <= 3:
        raise SystemExit(__doc__)
    checkouts = {"A": Path(sys.argv[1]).resolve(),
                 "B": Path(sys.argv[2]).resolve() if len(sys.argv) == 3 else ROOT}
    print(f"latency A/B · one-record jobs · {machine()}")
    with servers() as env, ExitStack() as stacks:
        started = {name: stacks.enter_context(stack_of(checkout, name, env, 5077 + n))
                   for n, (name, checkout) in enumerate(checkouts.items())}
        def cpu_of(pids: list[int]) -> Callable[[], float]:
            processes = stack_processes(pids)  # the API's and the worker's stay put
            return lambda: cpu_seconds(processes)

        timings = take_turns([Way(name, ours(base, name), cpu=cpu_of(pids))
                              for name, (base, pids) in started.items()], lambda on: None)
    for name, checkout in checkouts.items():
        python = os.environ.get(f"AB_PYTHON_{name}")
        print(f"  {name} {checkout}{f' with {python}' if python else ''}\n"
              f"      {summary(timings[name])} · API and worker CPU "
              f"{timings[name].own / len(timings[name]) * 1000:.2f} ms/job")
    a, b = timings["A"], timings["B"]
    print(f"  B / A: p50 {percentile(b, 50) / percentile(a, 50):.3f} · "
          f"p99 {percentile(b, 99) / percentile(a, 99):.3f} · "
          f"API and worker CPU {b.own / len(b) / (a.own / len(a)):.3f}")


if __name__ == "__main__":
    main()
