"""Other Python code submits a pipeline and waits for it: no HTTP involved."""

from __future__ import annotations

import pytest

from tasks import JobFailed, run_pipeline, submit_pipeline, wait_for_job


@pytest.mark.usefixtures("worker", "clean_tables")
def test_run_pipeline_stores_and_returns_the_finished_job(settings, retrieve):
    job = run_pipeline(
        [{"campaign_id": "py-1", "spend": "40", "impressions": 2000, "clicks": 20,
          "conversions": 4, "conversion_value": "120", "date": "2025-01-15"}],
        data_type="campaign_performance", source="generic", settings=settings, timeout=30,
    )
    assert job["status"] == "succeeded"
    assert job["result"]["inserted"] == 1
    record = retrieve({"data_type": "campaign_performance",
                       "filters": {"campaign_id": "py-1"}})["records"][0]
    assert record["roas"] == 3.0 and record["cpa"] == 10.0 and record["ctr"] == 0.01


@pytest.mark.usefixtures("worker")
def test_submit_then_wait_and_a_failed_job_raises(settings):
    job_id = submit_pipeline(
        [{"campaign_id": "py-2", "spend": "-5"}],
        data_type="campaign_performance", source="generic", settings=settings,
        validation_rules={"on_invalid": "reject_batch"},
    )
    with pytest.raises(JobFailed) as failure:
        wait_for_job(job_id, timeout=30, settings=settings)
    assert failure.value.job["error"]["code"] == "validation_failed"
    job = wait_for_job(job_id, timeout=1, settings=settings, raise_on_failure=False)
    assert job["stages"][1]["status"] == "failed"
    assert job["stages"][2]["status"] == "pending"


@pytest.mark.usefixtures("worker", "clean_tables")
def test_submit_file_streams_a_local_ndjson_file(settings, tmp_path, retrieve):
    from tasks import submit_file

    path = tmp_path / "rows.ndjson"
    path.write_text("".join(
        f'{{"campaign_id": "file-{i}", "spend": "1.5", "impressions": 100, "clicks": 3,'
        f' "date": "2025-02-0{1 + i % 3}"}}\n' for i in range(2500)))
    job_id = submit_file(path, data_type="campaign_performance", source="generic",
                         settings=settings)
    job = wait_for_job(job_id, timeout=60, settings=settings)
    assert job["records_count"] == 2500 and job["result"]["inserted"] == 2500
    found = retrieve({"data_type": "campaign_performance",
                      "filters": {"campaign_id": "file-7"}})
    assert found["records"][0]["ctr"] == 0.03 and found["records"][0]["date"] == "2025-02-02"
