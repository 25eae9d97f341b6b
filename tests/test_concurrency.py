"""Eight clients post overlapping batches for the same keys at once.

The rule: of two writes of one natural key, the batch accepted later (the job's
created_at, then its id) wins, whatever order the workers store them in. No deadlock
(rows are written in natural-key order), no lost update, and every job succeeds.
"""

from __future__ import annotations

import random
import threading

import pytest
from sqlalchemy import text

CLIENTS = 8
KEYS = 300


@pytest.mark.usefixtures("clean_tables")
def test_overlapping_batches_from_8_clients_last_accepted_wins(app, engine, job_waiter):
    answers: dict[int, str] = {}
    barrier = threading.Barrier(CLIENTS)

    def client_posts(n: int) -> None:
        keys = list(range(KEYS))
        random.Random(n).shuffle(keys)  # each client writes the keys in its own order
        records = [{"campaign_id": f"k{k}", "account_id": "conc", "date": "2025-04-01",
                    "spend": str(n), "impressions": 100 + n, "clicks": n}
                   for k in keys[: KEYS - 20 * n]]  # overlapping, not identical, key sets
        barrier.wait()
        with app.test_client() as own:
            response = own.post("/api/v1/data_pipeline/ingest", json={
                "source": "generic", "data_type": "campaign_performance",
                "data": {"records": records}})
        assert response.status_code == 202
        answers[n] = response.get_json()["job_id"]

    threads = [threading.Thread(target=client_posts, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    finished = {n: job_waiter(job_id, 120) for n, job_id in answers.items()}
    assert all(job["status"] == "succeeded" for job in finished.values()), finished

    with engine.connect() as conn:
        accepted = {row.id: (row.created_at, row.id) for row in conn.execute(text(
            "SELECT id::text AS id, created_at FROM pipeline_jobs WHERE id::text = ANY(:ids)"),
            {"ids": list(answers.values())})}
        stored = {row.campaign_id: (row.spend, row.job_id) for row in conn.execute(text(
            "SELECT campaign_id, spend, job_id FROM campaign_performance "
            "WHERE account_id = 'conc'"))}
    client_of = {job_id: n for n, job_id in answers.items()}
    assert len(stored) == KEYS  # every key present once
    for k in range(KEYS):
        writers = [n for n in range(CLIENTS) if k in _keys_of(n)]
        expected = max(writers, key=lambda n: accepted[answers[n]])
        spend, job_id = stored[f"k{k}"]
        assert client_of[job_id] == expected, f"key k{k}"
        assert int(spend) == expected

    written = sum(job["result"]["inserted"] + job["result"]["updated"]
                  for job in finished.values())
    skipped = sum(job["result"]["skipped"] for job in finished.values())
    assert written + skipped == sum(len(_keys_of(n)) for n in range(CLIENTS))


def _keys_of(n: int) -> set[int]:
    keys = list(range(KEYS))
    random.Random(n).shuffle(keys)
    return set(keys[: KEYS - 20 * n])


@pytest.mark.usefixtures("clean_tables")
def test_a_batch_stored_after_a_newer_one_does_not_overwrite_it(engine):
    from datetime import UTC, datetime, timedelta

    from tasks.datatypes import CAMPAIGN_PERFORMANCE
    from tasks.storage.upsert import upsert

    row = {"source": "generic", "account_id": "order", "campaign_id": "c", "date": None}
    newer = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
    with engine.begin() as conn:
        first = upsert(conn, CAMPAIGN_PERFORMANCE, [{**row, "spend": 2}], job_id="job-new",
                       accepted_at=newer)
        late = upsert(conn, CAMPAIGN_PERFORMANCE, [{**row, "spend": 1}], job_id="job-old",
                      accepted_at=newer - timedelta(seconds=1))  # accepted earlier, stored later
        later = upsert(conn, CAMPAIGN_PERFORMANCE, [{**row, "spend": 3}], job_id="job-next",
                       accepted_at=newer + timedelta(seconds=1))
        spend, job_id = conn.execute(text(
            "SELECT spend, job_id FROM campaign_performance WHERE account_id = 'order'")).one()
    assert first["inserted"] == 1
    assert late == {"inserted": 0, "updated": 0, "skipped": 1, "duplicates_in_batch": 0}
    assert later["updated"] == 1
    assert (int(spend), job_id) == (3, "job-next")
