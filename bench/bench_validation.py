"""Throughput of the validate stage core on campaign_performance batches.

Records are made the way the stage receives them: JSON parsed by orjson (fresh for each
run), spend as a string ("100.5") or a number, counts as ints. Each scenario prints
records/s and the ratio to a plain baseline measured in the same run (orjson.loads of
the same batch), so figures from different machines can be compared.

Rates are records per CPU-second of this process (time.process_time), best of --repeat
runs; wall-clock rates are shown beside them. On a shared machine wall time also counts
the time spent waiting for a CPU, which says nothing about this code.

    .venv/bin/python bench/bench_validation.py [--records 100000] [--repeat 5]

Scenarios:
  seed, 10% invalid   the seed's rules (required_fields + numeric_fields) with defaults
  seed, all invalid   every record fails: the cost must stay linear (result lists capped)
  linearity           all-invalid at 1/4, 1/2 and the full size: time per record
  all rule kinds      one rule of every kind on top of the seed's, 10% invalid
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.datatypes import CAMPAIGN_PERFORMANCE  # noqa: E402
from tasks.validation.core import validate  # noqa: E402

TARGET_RECORDS_PER_SECOND = 300_000
SEED_RULES = {
    "required_fields": ["campaign_id", "spend", "impressions", "clicks", "conversions"],
    "numeric_fields": ["spend", "impressions", "clicks", "conversions"],
}
ALL_KINDS = {
    **SEED_RULES,
    "rules": [
        {"rule": "not_null", "field": "campaign_name"},
        {"rule": "forbidden", "field": "password"},
        {"rule": "type", "field": "campaign_id", "type": "integer", "severity": "warn"},
        {"rule": "range", "field": "spend", "min": 0, "max": 100000},
        {"rule": "allowed_values", "field": "currency", "values": ["USD", "EUR", "GBP"]},
        {"rule": "regex", "field": "campaign_id", "pattern": "^[0-9]+$"},
        {"rule": "length", "field": "campaign_name", "min": 1, "max": 200},
        {"rule": "unique", "fields": ["campaign_id", "date"]},
        {"rule": "compare", "left": "clicks", "op": "<=", "right": "impressions"},
        {"rule": "compare", "left": "conversions", "op": "<=", "right": "clicks",
         "mostly": 0.95},
        {"rule": "row_count", "min": 1, "max": 1_000_000},
        {"rule": "freshness", "field": "date", "max_age_days": 3650},
    ],
}


def make_record(i: int, rng: random.Random) -> dict[str, Any]:
    impressions = rng.randint(1_000, 100_000)
    clicks = rng.randint(0, impressions // 10)
    spend = round(rng.uniform(1, 5_000), 2)
    return {
        "campaign_id": str(100_000 + i),
        "campaign_name": f"Campaign {i % 500}",
        "date": f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}",
        "currency": "USD",
        "spend": str(spend) if i % 2 else spend,  # strings as Decimals travel, or numbers
        "impressions": impressions,
        "clicks": clicks,
        "conversions": rng.randint(0, max(clicks // 10, 1)) if clicks else 0,
    }


def spoil(record: dict[str, Any], i: int) -> None:
    """Make one record invalid, four ways in turn."""
    kind = i % 4
    if kind == 0:
        del record["campaign_id"]
    elif kind == 1:
        record["spend"] = "-12.5"
    elif kind == 2:
        record["spend"] = "n/a"
    else:
        record["clicks"] = "lots"


def batch_json(n: int, invalid_every: int | None, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    records = []
    for i in range(n):
        record = make_record(i, rng)
        if invalid_every and i % invalid_every == 0:
            spoil(record, i // invalid_every)
        records.append(record)
    return orjson.dumps(records)


@dataclass
class Timing:
    wall: float
    cpu: float


def best_time(run: Callable[[Any], Any], setup: Callable[[], Any], repeat: int) -> Timing:
    """Best of `repeat` runs, each on fresh input (made outside the timing), as the stage
    gets a freshly parsed batch."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        data = setup()
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        run(data)
        cpu = min(cpu, time.process_time() - start_cpu)
        wall = min(wall, time.perf_counter() - start_wall)
    return Timing(wall, cpu)


def scenario(name: str, blob: bytes, rules: dict[str, Any], repeat: int) -> float:
    """Prints and returns records per CPU-second (see the module docstring)."""
    n = len(orjson.loads(blob))
    baseline = best_time(lambda _: orjson.loads(blob), lambda: None, repeat)
    timing = best_time(lambda records: validate(records, CAMPAIGN_PERFORMANCE, rules),
                       lambda: orjson.loads(blob), repeat)
    output = validate(orjson.loads(blob), CAMPAIGN_PERFORMANCE, rules)
    rate, base_rate = n / timing.cpu, n / baseline.cpu
    result_size = len(orjson.dumps(output.result))
    print(f"{name:<20} {n:>7} records  {rate:>9,.0f} rec/s (wall {n / timing.wall:>9,.0f})"
          f"  orjson.loads {base_rate:>9,.0f} rec/s  ratio {rate / base_rate:4.2f}"
          f"  invalid {output.result['invalid_count']:>6}  result {result_size:>5} B")
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n = args.records

    seed_rate = scenario("seed, 10% invalid", batch_json(n, 10), SEED_RULES, args.repeat)
    scenario("seed, all invalid", batch_json(n, 1), SEED_RULES, args.repeat)

    print("linearity, all invalid: CPU time per record should stay flat")
    for size in (n // 4, n // 2, n):
        blob = batch_json(size, 1)
        timing = best_time(lambda r: validate(r, CAMPAIGN_PERFORMANCE, SEED_RULES),
                           lambda b=blob: orjson.loads(b), args.repeat)
        print(f"  {size:>8} records  {timing.cpu / size * 1e6:6.2f} us/record")

    scenario("all rule kinds, 10%", batch_json(n, 10), ALL_KINDS, args.repeat)

    ok = seed_rate >= TARGET_RECORDS_PER_SECOND
    print(f"target {TARGET_RECORDS_PER_SECOND:,} records/s (CPU) for the seed's rules, "
          f"10% invalid: {'met' if ok else 'NOT met'} ({seed_rate:,.0f})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
