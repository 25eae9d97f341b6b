"""A large store runs in slices (progress between them) with exact counts."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tasks.storage.core import STORE_SLICE


@pytest.mark.usefixtures("clean_tables")
def test_a_store_larger_than_a_slice_counts_exactly_and_keeps_the_last_record(run_job,
                                                                              engine):
    n = 2 * STORE_SLICE + 5_000
    records = [{"campaign_id": f"s-{i}", "account_id": "slices", "date": "2025-06-01",
                "spend": "1", "impressions": 10, "clicks": 1} for i in range(n)]
    # Keys repeated across slices: the last record of a key wins, counted as a duplicate.
    records += [{**records[i], "spend": "9"} for i in range(0, 100)]
    job = run_job("store", {"data_type": "campaign_performance",
                            "data": {"records": records}}, timeout=120)
    assert job["status"] == "succeeded", job["error"]
    result = job["result"]
    assert result["inserted"] == n and result["updated"] == 0
    assert result["duplicates_in_batch"] == 100
    assert job["progress"] == {"stage": "store", "records_done": n + 100,
                               "records_total": n + 100}
    with engine.connect() as conn:
        count, nines = conn.execute(text(
            "SELECT count(*), count(*) FILTER (WHERE spend = 9) FROM campaign_performance "
            "WHERE account_id = 'slices'")).one()
    assert (count, nines) == (n, 100)
