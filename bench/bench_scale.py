"""Scale: throughput against batch size and worker processes, and how a job's cost grows
with its batch.

For each number of worker processes (1, 2) and each batch size (1k, 10k, 50k records):
  throughput  BENCH_SCALE_RECORDS rows posted in batches by 4 client threads, through
              the whole chain, until every job has succeeded (rows/s end to end)
  one job     a single job of that size alone, new keys (3 runs, median): time from
              the POST to `succeeded`, and that time per record
Each cell starts from an empty table, next to the raw COPY + merge of the same rows in
the same run (the yardstick of bench_throughput.py).

    BENCH_SCALE_RECORDS=200000 python bench/bench_scale.py
"""

from __future__ import annotations

import os
import statistics
import time

import orjson
from bench_throughput import empty_table, ours, raw_copy_merge
from harness import campaign_rows, http, machine, running_stack, servers, wait_job

RECORDS = int(os.environ.get("BENCH_SCALE_RECORDS", "200000"))
BATCHES = [int(b) for b in os.environ.get("BENCH_SCALE_BATCHES", "1000,10000,50000").split(",")]
WORKERS = [int(w) for w in os.environ.get("BENCH_SCALE_WORKERS", "1,2").split(",")]


def one_job(base: str, batch: list[dict]) -> float:
    body = orjson.dumps({"source": "generic", "data_type": "campaign_performance",
                         "data": {"records": batch}})
    started = time.perf_counter()
    status, accepted = http("POST", f"{base}/api/v1/data_pipeline/ingest", raw=body)
    assert status == 202, accepted
    job = wait_job(base, accepted["job_id"])
    assert job["status"] == "succeeded", job
    return time.perf_counter() - started


def main() -> None:
    if RECORDS < 3 * max(BATCHES):  # one job alone is timed on 3 batches of new keys
        raise SystemExit(f"BENCH_SCALE_RECORDS must be at least 3 of the largest batch "
                         f"({3 * max(BATCHES):,})")
    rows = campaign_rows(RECORDS)
    print(f"# scale · {RECORDS:,} campaign_performance rows per cell · {machine()}")
    print("| workers | batch | raw COPY + merge | ours end to end | ours / raw "
          "| one job alone | per record |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with servers() as env:
        for workers in WORKERS:
            with running_stack(env, workers=workers) as base:
                for size in BATCHES:
                    batches = [rows[i:i + size] for i in range(0, RECORDS, size)]
                    empty_table(env["DATABASE_URL"])
                    seconds, stored = ours(base, batches)
                    assert stored == RECORDS, f"stored {stored} of {RECORDS}"
                    empty_table(env["DATABASE_URL"])
                    alone = statistics.median(one_job(base, batches[k]) for k in range(3))
                    empty_table(env["DATABASE_URL"])
                    raw = raw_copy_merge(env["DATABASE_URL"], batches)
                    print(f"| {workers} | {size:,} | {RECORDS / raw:,.0f} rows/s "
                          f"| {RECORDS / seconds:,.0f} rows/s | {raw / seconds:.2f} "
                          f"| {alone * 1000:,.0f} ms | {alone / size * 1e6:,.1f} µs |",
                          flush=True)


if __name__ == "__main__":
    main()
