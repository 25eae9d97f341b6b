"""Benchmark of retrieval on millions of campaign_performance rows.

Loads N rows (default 5,000,000: 50 accounts x 137 campaigns x 730 days) with COPY
straight into the partitioned table of a dedicated database, `pipeline_bench`, on the
server of DATABASE_URL (without DATABASE_URL: the private PostgreSQL under var/bench).
The rows are kept between runs; --reload makes them again. Then, for each query, it
prints p50 and p99 of:

    builder   tasks.storage.retrieve.retrieve(): request checks, SQL built by our query
              builder, execution, records as dicts (what the API view runs)
    api       the whole POST /retrieve through Flask (JSON in, JSON out; no network)
    baseline  the same SQL, written by hand, run with psycopg2 directly

and the builder/baseline and api/baseline ratios, i.e. what our layers cost.

    .venv/bin/python bench/bench_retrieval.py [--rows N] [--runs R] [--reload]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg2
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.datatypes import CAMPAIGN_PERFORMANCE  # noqa: E402
from tasks.storage import cursor as cursors  # noqa: E402
from tasks.storage import db  # noqa: E402
from tasks.storage.partitions import ensure_partitions  # noqa: E402
from tasks.storage.retrieve import build_query, read_only, retrieve  # noqa: E402
from tasks.storage.schema import create_schema  # noqa: E402

DATABASE = "pipeline_bench"
ACCOUNTS = 50
CAMPAIGNS_PER_ACCOUNT = 137
FIRST_DAY = date(2023, 1, 1)
MIN_DAYS = 62
TARGETS_MS = {"page": 20.0, "deep keyset page": 20.0, "month aggregation": 200.0}
COPY_COLUMNS = ("source", "account_id", "campaign_id", "campaign_name", "date", "currency",
                "spend", "impressions", "clicks", "conversions", "conversion_value",
                "job_id", "ingested_at", "updated_at")


def server_url() -> tuple[str, Callable[[], None]]:
    """The server's URL and how to stop what this run started."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return url, lambda: None
    from stack.embedded import EmbeddedServers

    servers = EmbeddedServers(ROOT / "var" / "bench")
    started = servers.start_postgres()
    return servers.database_url, (servers.stop_postgres if started else lambda: None)


def bench_engine(url: str) -> Engine:
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"),
                              {"name": DATABASE}).scalar()
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{DATABASE}"'))  # a constant name
    admin.dispose()
    return create_engine(make_url(url).set(database=DATABASE), pool_size=2)


def _rows_csv(days: list[date]) -> io.StringIO:
    buffer = io.StringIO()
    write = buffer.write
    rng = random.Random(days[0].toordinal())
    for day in days:
        iso = day.isoformat()
        for a in range(ACCOUNTS):
            source = "meta_ads" if a % 2 else "google_ads"
            for c in range(CAMPAIGNS_PER_ACCOUNT):
                impressions = rng.randint(0, 50_000)
                clicks = rng.randint(0, impressions // 20 + 1)
                write(f"{source},act-{a:02d},cmp-{a:02d}-{c:03d},Campaign {a}/{c},{iso},USD,"
                      f"{rng.randint(0, 100_000) / 100},{impressions},{clicks},"
                      f"{clicks // 25},{rng.randint(0, 300_000) / 100},bench,now,now\n")
    buffer.seek(0)
    return buffer


def load(engine: Engine, rows: int) -> None:
    per_day = ACCOUNTS * CAMPAIGNS_PER_ACCOUNT
    days = [FIRST_DAY + timedelta(days=n) for n in range(-(-rows // per_day))]
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE campaign_performance"))
    with engine.begin() as conn:
        ensure_partitions(conn, CAMPAIGN_PERFORMANCE, days)
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            columns = ", ".join(COPY_COLUMNS)
            for start in range(0, len(days), 10):  # ten days per COPY keeps memory small
                cur.copy_expert(f"COPY campaign_performance ({columns}) FROM STDIN "
                                "WITH (FORMAT csv)", _rows_csv(days[start:start + 10]))
                if start % 100 == 0:
                    print(f"  {min(start + 10, len(days)) * per_day:,} rows ...", flush=True)
        raw.commit()
        raw.set_session(autocommit=True)
        with raw.cursor() as cur:
            cur.execute("VACUUM (ANALYZE) campaign_performance")
            cur.execute("ANALYZE campaign_performance")  # the parent's own statistics
    finally:
        raw.close()
    print(f"  loaded {len(days) * per_day:,} rows in {time.perf_counter() - started:.0f} s "
          "(COPY, indexes, VACUUM ANALYZE)")


def percentiles(layers: dict[str, Callable[[int], Any]], runs: int
                ) -> dict[str, tuple[float, float]]:
    """p50 and p99 (ms) per layer. The layers take turns on each request, in a shuffled
    order, so that whatever else the machine is doing weighs on all of them alike."""
    for i in range(min(20, runs)):  # warm caches and plans first
        for run in layers.values():
            run(i)
    times: dict[str, list[float]] = {name: [] for name in layers}
    order = list(layers)
    shuffle = random.Random(3).shuffle
    for i in range(runs):
        shuffle(order)
        for name in order:
            start = time.perf_counter()
            layers[name](i)
            times[name].append((time.perf_counter() - start) * 1000)
    out = {}
    for name, values in times.items():
        values.sort()
        out[name] = (statistics.median(values),
                     values[min(len(values) - 1, int(len(values) * 0.99))])
    return out


def _months(rng: random.Random, count: int, last_day: date) -> list[tuple[date, date]]:
    out = []
    for _ in range(count):
        first = FIRST_DAY + timedelta(days=rng.randint(0, (last_day - FIRST_DAY).days - 31))
        first = first.replace(day=1)
        end = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        out.append((first, end))
    return out


def scenarios(engine: Engine, runs: int, last_day: date) -> dict[str, dict[str, Any]]:
    """Per query: a request body per run, and the hand-written SQL + parameters per run."""
    rng = random.Random(11)
    months = _months(rng, runs, last_day)
    accounts = [f"act-{rng.randrange(ACCOUNTS):02d}" for _ in range(runs)]

    page_sql = ("SELECT * FROM campaign_performance WHERE account_id = %(a)s AND date >= %(s)s "
                "AND date <= %(e)s ORDER BY date DESC, campaign_id, id LIMIT 101")
    count_sql = ("SELECT count(*) FROM campaign_performance WHERE account_id = %(a)s "
                 "AND date >= %(s)s AND date <= %(e)s")
    page = {
        "bodies": [{"filters": {"account_id": accounts[i], "date_range": {
            "start": months[i][0].isoformat(), "end": months[i][1].isoformat()}},
            "sort": ["-date", "campaign_id"], "limit": 100} for i in range(runs)],
        "sql": [[(page_sql, {"a": accounts[i], "s": months[i][0], "e": months[i][1]}),
                 (count_sql, {"a": accounts[i], "s": months[i][0], "e": months[i][1]})]
                for i in range(runs)],
    }

    # Deep keyset pages: cursors into the middle of the whole table, ordered by -date.
    key = cursors.signing_key(engine)
    query = build_query(CAMPAIGN_PERFORMANCE, sort=["-date", "campaign_id"])
    with engine.connect() as conn:
        total = conn.execute(text("SELECT count(*) FROM campaign_performance")).scalar_one()
        positions = []
        for _ in range(runs):
            day = FIRST_DAY + timedelta(days=rng.randint(30, (last_day - FIRST_DAY).days - 30))
            campaign = f"cmp-{rng.randrange(ACCOUNTS):02d}-{rng.randrange(100):03d}"
            row_id = conn.execute(text(
                "SELECT id FROM campaign_performance WHERE date = :d AND campaign_id = :c"),
                {"d": day, "c": campaign}).scalar_one()
            positions.append((day, campaign, row_id))
    seek_sql = (
        "SELECT * FROM campaign_performance WHERE date <= %(d)s AND (date < %(d)s OR "
        "(date = %(d)s AND (campaign_id > %(c)s OR campaign_id IS NULL)) OR "
        "(date = %(d)s AND campaign_id = %(c)s AND id > %(i)s)) "
        "ORDER BY date DESC, campaign_id, id LIMIT 101")
    deep = {
        # The count of the first page travels in the cursor, as in a real walk.
        "bodies": [{"sort": ["-date", "campaign_id"], "limit": 100, "cursor": cursors.encode(
            key, {"v": 1, "q": query.digest, "t": total,
                  "k": [d.isoformat(), c, i]})} for d, c, i in positions],
        "sql": [[(seek_sql, {"d": d, "c": c, "i": i})] for d, c, i in positions],
    }

    agg_sql = ("WITH groups AS MATERIALIZED (SELECT campaign_id, sum(spend) AS spend, "
               "sum(clicks)::bigint AS clicks, sum(impressions)::bigint AS impressions, "
               "sum(clicks)::numeric / nullif(sum(impressions), 0) AS ctr "
               "FROM campaign_performance WHERE date >= %(s)s AND date <= %(e)s "
               "GROUP BY campaign_id) "
               "SELECT *, count(*) OVER () FROM groups ORDER BY campaign_id LIMIT 101")
    aggregation = {
        "bodies": [{"group_by": ["campaign_id"],
                    "metrics": ["spend", "clicks", "impressions", "ctr"],
                    "filters": {"date_range": {"start": s.isoformat(), "end": e.isoformat()}},
                    "limit": 100} for s, e in months],
        "sql": [[(agg_sql, {"s": s, "e": e})] for s, e in months],
    }
    return {"page": page, "deep keyset page": deep, "month aggregation": aggregation}


def _call_kwargs(body: dict[str, Any]) -> dict[str, Any]:
    return {"filters": body.get("filters"), "sort": body.get("sort", ()),
            "limit": body.get("limit"), "cursor_token": body.get("cursor"),
            "group_by": body.get("group_by"), "metrics": body.get("metrics")}


def measure(url: str, scenario: dict[str, Any], runs: int,
            key: bytes) -> dict[str, tuple[float, float]]:
    bodies, statements = scenario["bodies"], scenario["sql"]
    params = make_url(url).set(database=DATABASE).translate_connect_args(username="user")
    params.update({k: v for k, v in make_url(url).query.items() if k in ("host", "port")})
    params["dbname"] = params.pop("database")
    raw = psycopg2.connect(**params)
    raw.set_session(readonly=True)

    def baseline(i: int) -> None:
        with raw.cursor() as cur:
            for sql, values in statements[i % len(statements)]:
                cur.execute(sql, values)
                cur.fetchall()
        raw.rollback()

    client = _app(url).test_client()
    app_engine = db.get_engine()  # the API's own engine and pool settings, for both layers

    def builder(i: int) -> None:
        with read_only(app_engine) as conn:
            retrieve(conn, CAMPAIGN_PERFORMANCE, cursor_key=key,
                     **_call_kwargs(bodies[i % len(bodies)]))

    def api(i: int) -> None:
        response = client.post("/api/v1/data_pipeline/retrieve", json={
            "data_type": "campaign_performance", **bodies[i % len(bodies)]})
        assert response.status_code == 200, response.get_json()

    results = percentiles({"baseline": baseline, "builder": builder, "api": api}, runs)
    raw.close()
    return results


_apps: dict[str, Any] = {}


def _app(url: str) -> Any:
    if url not in _apps:
        from tasks.settings import Settings
        from webapp import create_app

        settings = Settings(database_url=make_url(url).set(database=DATABASE)
                            .render_as_string(hide_password=False),
                            broker_url="redis://127.0.0.1:1/0")  # never contacted here
        _apps[url] = create_app({"SETTINGS": settings, "MIGRATE_ON_START": False})
    return _apps[url]


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({model})"


def report(name: str, results: dict[str, tuple[float, float]]) -> Iterator[str]:
    base50, base99 = results["baseline"]
    for layer in ("baseline", "builder", "api"):
        p50, p99 = results[layer]
        ratio = "" if layer == "baseline" else \
            f"   x{p50 / base50:.2f} p50, x{p99 / base99:.2f} p99 of baseline"
        yield f"  {name:<18} {layer:<8} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms{ratio}"
    target = TARGETS_MS[name]
    verdict = "ok" if results["api"][1] < target else "MISSED"
    yield f"  {'':<18} target p99 < {target:.0f} ms (api): {verdict}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--reload", action="store_true", help="make the rows again")
    args = parser.parse_args()
    # The scenarios pick months and positions at least 30 days from either end.
    least = MIN_DAYS * ACCOUNTS * CAMPAIGNS_PER_ACCOUNT
    if args.rows < least:
        parser.error(f"--rows must be at least {least:,} ({MIN_DAYS} days of "
                     f"{ACCOUNTS * CAMPAIGNS_PER_ACCOUNT:,} campaigns)")
    url, stop = server_url()
    try:
        engine = bench_engine(url)
        create_schema(engine)
        with engine.connect() as conn:
            have = conn.execute(text("SELECT count(*) FROM campaign_performance")).scalar_one()
            version = conn.execute(text("SHOW server_version")).scalar_one()
        if args.reload or have < args.rows:
            print(f"loading {args.rows:,} rows into {DATABASE}.campaign_performance ...")
            load(engine, args.rows)
        with engine.connect() as conn:
            have = conn.execute(text("SELECT count(*) FROM campaign_performance")).scalar_one()
            last_day = conn.execute(text("SELECT max(date) FROM campaign_performance")
                                    ).scalar_one()
            size = conn.execute(text(
                "SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) "
                "FROM pg_inherits WHERE inhparent = 'campaign_performance'::regclass")
            ).scalar_one()
        print(f"\nretrieval benchmark: {have:,} rows ({size} with indexes), "
              f"PostgreSQL {version}\nmachine: {machine()}, Python {platform.python_version()}"
              f"\n{args.runs} runs per query, random accounts / months / positions\n")
        key = cursors.signing_key(engine)
        missed = False
        for name, scenario in scenarios(engine, args.runs, last_day).items():
            results = measure(url, scenario, args.runs, key)
            for line in report(name, results):
                print(line, flush=True)
            missed |= results["api"][1] >= TARGETS_MS[name]
        return 1 if missed else 0
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
