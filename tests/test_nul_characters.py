"""PostgreSQL's text and jsonb cannot hold U+0000. A NUL in an upload (a CSV export with
stray zero bytes, a JSON string with \\u0000) is replaced by U+FFFD where the batch enters
the pipeline and counted in the stage's result, rather than failing the store (or the
quarantine) with a database error."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tasks.chunks import StageInput
from tasks.nul import NUL_REPLACEMENT, find_nul, without_nul
from tasks.storage import payloads
from tests.helpers import close_job, stored_job

R = NUL_REPLACEMENT


def test_without_nul_replaces_in_every_string_and_key_and_counts_them():
    value = {"a\x00": ["x\x00y", 1, None, {"k": "\x00\x00"}], "b": "clean", "c": 2.5}
    assert without_nul(value) == ({f"a{R}": [f"x{R}y", 1, None, {"k": R * 2}],
                                   "b": "clean", "c": 2.5}, 4)
    clean = {"a": ["b", {"c": "d"}]}
    assert without_nul(clean) == (clean, 0)


def test_find_nul_names_where_it_is():
    assert find_nul({"rules": [{"values": ["ok", "E\x00R"]}]}, "v") == "v.rules[0].values[1]"
    assert find_nul({"a\x00": 1}, "v") == "v.'a\\x00'"
    assert find_nul({"a": ["b", {"c": 1}]}, "v") is None


def test_a_nul_in_the_options_kept_with_the_job_is_a_422(client):
    response = client.post("/api/v1/data_pipeline/ingest", json={
        "source": "generic", "data_type": "campaign_performance",
        "data": {"records": [{"campaign_id": "x"}]},
        "validation_rules": {"rules": [
            {"rule": "allowed_values", "field": "currency", "values": ["EUR", "E\x00R"]}]}})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "invalid_request"
    assert error["details"] == {"field": "validation_rules.rules[0].values[1]"}
    for endpoint in ("validate", "process", "store"):  # where no adapter checks the source
        response = client.post(f"/api/v1/data_pipeline/{endpoint}", json={
            "source": "gen\x00eric", "data_type": "campaign_performance",
            "data": {"records": [{"campaign_id": "x"}]}})
        assert response.status_code == 422, (endpoint, response.get_json())
        assert response.get_json()["error"]["details"] == {"field": "source"}


@pytest.mark.usefixtures("clean_tables")
def test_every_pass_over_a_raw_batch_of_chunks_sees_them_replaced_counted_once(engine):
    records = [{"campaign_id": f"c{i}\x00", "date": "2025-02-01"} for i in range(5)]
    job_id = stored_job(engine, records, ["store"], chunk=2)
    with engine.connect() as conn:
        source = StageInput(conn, job_id, payloads.RAW)
        for _ in range(2):  # a first pass for repeated keys, then the work
            ids = [r["campaign_id"] for _, chunk in source.chunks() for r in chunk]
            assert ids == [f"c{i}{R}" for i in range(5)]
        assert source.chunk_count == 3 and source.nul_replaced == 5
    close_job(engine, job_id)


@pytest.mark.usefixtures("clean_tables")
# With 400 more records the batch passes 32 KiB: its stages go by reference, and the
# ingest and validate stages' outputs are references to the raw batch (payloads.decode).
@pytest.mark.parametrize("filler", [0, 400])
def test_nul_characters_are_replaced_counted_and_stored(run_job, engine, filler):
    records = [
        {"campaign_id": "nul-1", "date": "2025-02-01", "spend": "1",
         "campaign_name": "Spring\x00Sale", "utm\x00source": "news\x00letter"},
        {"campaign_id": "nul-2", "date": "2025-02-01", "spend": "not\x00money"},
        {"campaign_id": "clean", "date": "2025-02-01", "spend": "2",
         "campaign_name": "a literal \\u0000 stays as it is"},
    ] + [{"campaign_id": f"fill-{i}", "date": "2025-02-01", "spend": "1",
          "campaign_name": "x" * 60} for i in range(filler)]
    job = run_job("ingest", {"source": "generic", "data_type": "campaign_performance",
                             "data": {"records": records}})
    assert job["status"] == "succeeded", job
    ingest = next(s for s in job["stages"] if s["name"] == "ingest")
    assert ingest["result"]["nul_characters_replaced"] == 4
    with engine.connect() as conn:
        rows = {r.campaign_id: r for r in conn.execute(text(
            "SELECT campaign_id, campaign_name, extra FROM campaign_performance"))}
        quarantined = conn.execute(text(
            "SELECT record FROM pipeline_rejected WHERE job_id = :job"),
            {"job": job["job_id"]}).scalars().all()
    assert rows["nul-1"].campaign_name == f"Spring{R}Sale"
    assert rows["nul-1"].extra == {f"utm{R}source": f"news{R}letter"}
    assert rows["clean"].campaign_name == "a literal \\u0000 stays as it is"
    assert [q["spend"] for q in quarantined] == [f"not{R}money"]  # refused for its type


@pytest.mark.usefixtures("clean_tables")
def test_a_store_only_job_replaces_them_too(run_job, engine):
    job = run_job("store", {"data_type": "campaign_performance", "data": {"records": [
        {"source": "generic", "campaign_id": "s\x00", "date": "2025-02-02", "spend": "1"}]}})
    assert job["status"] == "succeeded", job
    assert job["stages"][0]["result"]["nul_characters_replaced"] == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT campaign_id FROM campaign_performance")).scalar() \
            == f"s{R}"
