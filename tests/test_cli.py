"""`flask --app webapp pipeline ...` against the real database and worker: Click's runner
in-process, and once as a subprocess against the running stack."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import uuid

import orjson
import pytest

from tests.conftest import ROOT
from tests.test_seed_api import SEED_INGEST

STAGES = ("ingest", "validate", "process", "store")


@pytest.fixture
def runner(app, worker):  # type: ignore[no-untyped-def]
    """Click's runner for the app's commands, with a live worker behind it."""
    return app.test_cli_runner()


def _campaign() -> str:
    return f"cli-{uuid.uuid4().hex[:12]}"


def _csv(campaign: str, rows: int = 3) -> str:
    lines = ["campaign_id,date,spend,impressions,clicks,conversions"]
    lines += [f"{campaign},2024-05-{day:02d},100.0,1000,50,5" for day in range(1, rows + 1)]
    return "\n".join(lines) + "\n"


def _ingest(runner, *args: str, input: bytes | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(args=["pipeline", "ingest", *args], input=input)


def test_ingest_csv_with_wait_shows_each_stage_and_stores_the_rows(runner, tmp_path):
    campaign = _campaign()
    path = tmp_path / "rows.csv"
    path.write_text(_csv(campaign))

    result = _ingest(runner, str(path), "--data-type", "campaign_performance",
                     "--source", "meta_ads", "--wait")

    assert result.exit_code == 0, result.output
    progress = result.stderr.splitlines()
    assert "3 records (csv)" in progress[0]
    for stage in STAGES:  # each stage reported, and finished with its records
        line = [p for p in progress if p.startswith(stage) and "succeeded" in p][-1]
        assert "3/3 records" in line and "#" * 24 in line, line
    assert result.stdout.startswith("job ") and " succeeded: " in result.stdout
    assert "3 received, 0 rejected, 3 inserted, 0 updated" in result.stdout

    shown = runner.invoke(args=["pipeline", "retrieve", "--data-type", "campaign_performance",
                                "--filter", f"campaign_id={campaign}", "--format", "json"])
    assert shown.exit_code == 0, shown.output
    records = orjson.loads(shown.stdout)
    assert [r["date"] for r in records] == ["2024-05-01", "2024-05-02", "2024-05-03"]
    assert records[0]["ctr"] == 0.05 and records[0]["cpc"] == 2.0


def test_ingest_ndjson_from_stdin_is_recognised_and_json_output_is_the_job(runner):
    campaign = _campaign()
    lines = b"".join(orjson.dumps({"campaign_id": campaign, "date": f"2024-06-0{d}",
                                   "spend": 10, "clicks": 1, "impressions": 100}) + b"\n"
                     for d in (1, 2))

    result = _ingest(runner, "-", "--data-type", "campaign_performance", "--wait",
                     "--json", "--quiet", input=lines)

    assert result.exit_code == 0, result.output
    assert "2 records (ndjson)" in result.stderr
    job = orjson.loads(result.stdout)
    assert job["status"] == "succeeded" and job["records_count"] == 2
    assert [s["name"] for s in job["stages"]] == list(STAGES)
    # The last stage's end is on the job row: all of its records done.
    assert job["progress"] == {"stage": "store", "records_done": 2, "records_total": 2}


def test_ingest_the_seed_request_body_as_a_json_file(runner, tmp_path):
    path = tmp_path / "seed.json"
    path.write_bytes(orjson.dumps(SEED_INGEST))

    result = _ingest(runner, str(path), "--wait", "--json", "--quiet")

    assert result.exit_code == 0, result.output
    job = orjson.loads(result.stdout)
    assert job["status"] == "succeeded"
    assert (job["data_type"], job["source"]) == ("campaign_performance", "meta_ads")
    assert job["result"]["records_count"] == 1


def test_ingest_without_wait_prints_the_job_id_and_jobs_show_follows_it(runner):
    rows = orjson.dumps([{"campaign_id": _campaign(), "spend": 1.5}])
    result = _ingest(runner, "-", "--data-type", "campaign_performance", input=rows)
    assert result.exit_code == 0, result.output
    job_id = result.stdout.strip()
    assert str(uuid.UUID(job_id)) == job_id

    shown = runner.invoke(args=["pipeline", "jobs", "show", job_id, "--wait"])
    assert shown.exit_code == 0, shown.output
    assert f"job {job_id} succeeded" in shown.stdout

    text = runner.invoke(args=["pipeline", "jobs", "show", job_id])
    assert text.exit_code == 0
    assert f"job       {job_id}" in text.stdout and "status    succeeded" in text.stdout
    for stage in STAGES:
        assert any(line.startswith(stage) for line in text.stdout.splitlines())
    as_json = runner.invoke(args=["pipeline", "jobs", "show", job_id, "--format", "json"])
    assert orjson.loads(as_json.stdout)["job_id"] == job_id

    listed = runner.invoke(args=["pipeline", "jobs", "list", "--status", "succeeded",
                                 "--limit", "50"])
    assert listed.exit_code == 0
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:4] == ["JOB_ID", "STATUS", "KIND", "DATA_TYPE"]
    assert any(row.startswith(job_id) and " succeeded " in row for row in rows)
    failed = runner.invoke(args=["pipeline", "jobs", "list", "--status", "failed",
                                 "--format", "json"])
    assert job_id not in {j["job_id"] for j in orjson.loads(failed.stdout)}


def test_unknown_jobs_and_bad_input_are_clear_errors(runner, tmp_path):
    missing = runner.invoke(args=["pipeline", "jobs", "show", str(uuid.uuid4())])
    assert missing.exit_code == 1 and "no job" in missing.output
    assert runner.invoke(args=["pipeline", "jobs", "show", "nope"]).exit_code == 1

    no_type = _ingest(runner, "-", input=b"campaign_id,spend\n1,2\n")
    assert no_type.exit_code == 2 and "--data-type is required" in no_type.output
    unknown = _ingest(runner, "-", "--data-type", "campaign_perf", input=b"a\n1\n")
    assert unknown.exit_code == 2 and "campaign_perf" in unknown.output

    broken = tmp_path / "broken.ndjson"
    broken.write_text('{"campaign_id": "1"}\n{not json\n')
    bad = _ingest(runner, str(broken), "--data-type", "campaign_performance")
    assert bad.exit_code == 1 and "line 2" in bad.output

    body = {**SEED_INGEST, "storage_options": {"table_name": "users"}}
    refused = _ingest(runner, "-", "--format", "json", input=orjson.dumps(body))
    assert refused.exit_code == 1 and "table_name 'users'" in refused.output


def test_retrieve_filters_and_formats(runner):
    campaign = _campaign()
    result = _ingest(runner, "-", "--data-type", "campaign_performance", "--source",
                     "meta_ads", "--wait", "--quiet", input=_csv(campaign, rows=5).encode())
    assert result.exit_code == 0, result.output
    base = ["pipeline", "retrieve", "--data-type", "campaign_performance",
            "--filter", f"campaign_id={campaign}"]

    table = runner.invoke(args=[*base, "--field", "date", "--field", "spend",
                                "--sort", "-date", "--limit", "2"])
    assert table.exit_code == 0, table.output
    assert table.stdout.splitlines() == [
        "DATE        SPEND", "2024-05-05  100", "2024-05-04  100"]
    assert "2 of 5 records; next --offset 2" in table.stderr

    ranged = runner.invoke(args=[*base, "--filter", "date_range=2024-05-02..2024-05-03",
                                 "--filter", 'spend={"gte": 50}', "--format", "csv",
                                 "--field", "campaign_id", "--field", "date"])
    assert ranged.exit_code == 0, ranged.output
    assert list(csv.reader(io.StringIO(ranged.stdout))) == [
        ["campaign_id", "date"], [campaign, "2024-05-02"], [campaign, "2024-05-03"]]

    unknown = runner.invoke(args=[*base, "--filter", "colour=red"])
    assert unknown.exit_code == 1 and "colour" in unknown.output
    malformed = runner.invoke(args=[*base, "--filter", "campaign_id"])
    assert malformed.exit_code == 2 and "key=value" in malformed.output


def test_the_command_runs_as_a_subprocess_against_the_stack(service_env, worker, tmp_path):
    path = tmp_path / "small.csv"
    path.write_text(_csv(_campaign(), rows=2))
    env = {**os.environ, **service_env, "PYTHONPATH": str(ROOT)}

    completed = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "webapp", "pipeline", "ingest", str(path),
         "--data-type", "campaign_performance", "--source", "meta_ads", "--wait"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    assert " succeeded: 2 received, 0 rejected, 2 inserted" in completed.stdout
    assert "2/2 records  succeeded" in completed.stderr


def test_cli_csv_escapes_formulas_like_the_api_export():
    from webapp.cli import render_csv

    text = render_csv([{"campaign_name": "=HYPERLINK(\"x\")", "spend": None}],
                      ["campaign_name", "spend"])
    assert list(csv.reader(io.StringIO(text))) == [
        ["campaign_name", "spend"], ["'=HYPERLINK(\"x\")", ""]]
