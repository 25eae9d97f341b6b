"""Memory: a large NDJSON or CSV file ingested over HTTP, peak resident memory per process.

The file (1 GB by default) is streamed to POST /api/v1/data_pipeline/ingest, which
stores it a chunk at a time; the job then runs ingest → validate → process → store with
the stages reading and writing a chunk at a time. A sampler reads every process of the API (gunicorn
master and workers) and of the Celery worker (main process and pool children) four
times a second, plus each process's own high-water mark (VmHWM). Target: every one of
them under 300 MB, whatever the file's size.

    BENCH_FILE_MB=1024 BENCH_FORMATS=ndjson,csv python bench/bench_memory.py
"""

from __future__ import annotations

import csv
import os
import threading
import time
import urllib.request
from pathlib import Path

import orjson
import psutil
from harness import ROOT, campaign_rows, machine, running_stack, servers, wait_job

FILE_MB = int(os.environ.get("BENCH_FILE_MB", "1024"))
FORMATS = os.environ.get("BENCH_FORMATS", "ndjson,csv").split(",")
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
TARGET_MB = 300
CONTENT_TYPES = {"ndjson": "application/x-ndjson", "csv": "text/csv"}
COLUMNS = list(campaign_rows(1)[0])


def make_file(fmt: str, megabytes: int) -> tuple[Path, int]:
    """A file of distinct campaign rows of about `megabytes` MB; (path, rows). Kept under
    var/bench-data for the next run."""
    folder = ROOT / "var" / "bench-data"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"campaigns-{megabytes}MB.{fmt}"
    count_file = path.with_suffix(path.suffix + ".rows")
    if path.exists() and count_file.exists():
        return path, int(count_file.read_text())
    limit = megabytes * 1024 * 1024
    rows = 0
    with path.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        if fmt == "csv":
            writer.writerow(COLUMNS)
        while out.tell() < limit:
            batch = campaign_rows(50_000, start=rows, tag=f"mem-{fmt}-")
            if fmt == "csv":
                writer.writerows([r[c] for c in COLUMNS] for r in batch)
            else:
                out.write(b"\n".join(orjson.dumps(r) for r in batch).decode() + "\n")
            rows += len(batch)
    count_file.write_text(str(rows))
    return path, rows


class Sampler:
    """Peak RSS of every process in the given process groups, sampled in a thread."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.peak: dict[int, tuple[str, int]] = {}  # pid -> (role, bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _processes(self) -> list[tuple[str, psutil.Process]]:
        found = []
        for role, pid in self.roots.items():
            try:
                root = psutil.Process(pid)
                found += [(role, p) for p in [root, *root.children(recursive=True)]]
            except psutil.NoSuchProcess:
                pass
        return found

    def sample(self) -> None:
        for role, process in self._processes():
            try:
                with open(f"/proc/{process.pid}/status") as status:
                    fields = dict(line.split(":", 1) for line in status if ":" in line)
                hwm = int(fields["VmHWM"].split()[0]) * 1024
                rss = process.memory_info().rss
                name = " ".join(process.cmdline()[1:4])[:60]
            except (psutil.Error, OSError, KeyError):
                continue
            _, before = self.peak.get(process.pid, (role, 0))
            self.peak[process.pid] = (f"{role}: {name}", max(before, hwm, rss))

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self.sample()

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def post_file(base: str, path: Path, fmt: str) -> tuple[int, dict]:
    url = f"{base}/api/v1/data_pipeline/ingest?source=generic&data_type=campaign_performance"
    with path.open("rb") as body:
        request = urllib.request.Request(url, method="POST", data=body, headers={
            "Content-Type": CONTENT_TYPES[fmt], "Content-Length": str(path.stat().st_size)})
        with urllib.request.urlopen(request, timeout=3600) as response:
            return response.status, orjson.loads(response.read())


def main() -> None:
    print(f"# memory · {machine()} · {FILE_MB} MB files · {WORKERS} worker processes")
    stack_pids: dict[str, int] = {}
    with servers() as env, running_stack(env, workers=WORKERS, pids=stack_pids) as base:
        for fmt in FORMATS:
            path, rows = make_file(fmt, FILE_MB)
            size_mb = path.stat().st_size / 1024**2
            with Sampler(stack_pids) as sampler:
                sampler.sample()
                idle = {pid: rss for pid, (_, rss) in sampler.peak.items()}
                started = time.perf_counter()
                status, accepted = post_file(base, path, fmt)
                uploaded = time.perf_counter() - started
                assert status == 202, accepted
                job = wait_job(base, accepted["job_id"], timeout=7200)
                elapsed = time.perf_counter() - started
            assert job["status"] == "succeeded", job.get("error")
            stored = job["result"]["records_count"]
            print(f"\n## {fmt}: {size_mb:,.0f} MB, {rows:,} rows; accepted in {uploaded:.0f} s, "
                  f"succeeded in {elapsed:.0f} s ({rows / elapsed:,.0f} rows/s); "
                  f"{stored:,} stored")
            print("| process | idle RSS | peak RSS | under 300 MB |")
            print("| --- | --- | --- | --- |")
            for pid, (role, peak) in sorted(sampler.peak.items(), key=lambda item: item[1][0]):
                under = "yes" if peak < TARGET_MB * 1024**2 else "NO"
                print(f"| {role} (pid {pid}) | {idle.get(pid, 0) / 1024**2:.0f} MB "
                      f"| {peak / 1024**2:.0f} MB | {under} |")


if __name__ == "__main__":
    main()
