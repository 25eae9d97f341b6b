"""Benchmark of the process stage core on campaign_performance with metrics on.

The batch is what the stage really receives: 100,000 records loaded by orjson from the
validate stage's output, money and conversions as strings ("100.5"), counts as ints,
dates as ISO strings. The baseline, measured in the same run on the same machine, is
orjson.loads of that batch; the reference is the seed's per-record coerce_record loop.

    .venv/bin/python bench/bench_processing.py [--records N] [--runs R]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.coerce import coerce_record  # noqa: E402
from tasks.datatypes import CAMPAIGN_PERFORMANCE  # noqa: E402
from tasks.processing.core import process  # noqa: E402

TARGET = 200_000  # records/s


def make_batch(count: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    records = []
    for i in range(count):
        clicks = rng.randint(0, 2_000)
        records.append({
            "source": "meta_ads",
            "account_id": f"act_{i % 7}",
            "campaign_id": f"{120_000_000 + i // 20}",
            "campaign_name": f"  Campaign {i // 20} ",
            "date": f"2025-{1 + i % 12:02d}-{1 + (i // 12) % 28:02d}",
            "currency": "USD",
            "spend": f"{rng.randint(0, 5_000_000) / 100}",
            "impressions": rng.randint(0, 200_000),
            "clicks": clicks,
            "reach": rng.randint(0, 100_000),
            "conversions": str(rng.randint(0, clicks // 10 + 1)),
            "conversion_value": f"{rng.randint(0, 10_000_000) / 100}",
        })
    return orjson.dumps(records)


def timed(run: Callable[[list[dict[str, Any]]], Any], body: bytes, runs: int) -> float:
    """Median seconds of `run` over fresh copies of the batch (parsing is not timed)."""
    times = []
    for _ in range(runs):
        batch = orjson.loads(body)
        start = time.perf_counter()
        run(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _time_loads(body: bytes) -> float:
    start = time.perf_counter()
    orjson.loads(body)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    body = make_batch(args.records)
    options = {"calculate_metrics": True}

    def run_process(batch: list[dict[str, Any]]) -> None:
        output = process(batch, CAMPAIGN_PERFORMANCE, options)
        assert output.result["records_count"] == args.records and not output.rejected

    def run_reference(batch: list[dict[str, Any]]) -> None:
        for record in batch:
            coerce_record(record, CAMPAIGN_PERFORMANCE)

    process(orjson.loads(body), CAMPAIGN_PERFORMANCE, options)  # warm-up: compiles the shape
    baseline = statistics.median(_time_loads(body) for _ in range(args.runs))
    processing = timed(run_process, body, args.runs)
    reference = timed(run_reference, body, args.runs)

    n = args.records
    print(f"records per batch            {n:>12,}   ({len(body) / n:.0f} bytes of JSON each)")
    print(f"baseline orjson.loads        {n / baseline:>12,.0f} records/s")
    print(f"process (metrics on)         {n / processing:>12,.0f} records/s"
          f"   = {baseline / processing:.2f} x the baseline's speed")
    print(f"reference coerce_record only {n / reference:>12,.0f} records/s")
    met = n / processing >= TARGET
    print(f"target {TARGET:,} records/s: {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
