"""Integers wider than 64 bits (a CRM's 27-digit id, a warehouse's DECIMAL(38) key) stay
exact from the request to the table: orjson, which reads them as floats, never sees them
(tasks/jsontext.py)."""

from __future__ import annotations

import json

import pytest

from tasks import jsontext

WIDE = 123456789012345678901234567


def test_loads_keeps_wide_integers_and_refuses_what_orjson_refuses():
    assert jsontext.loads(b'{"id": 123456789012345678901234567, "x": 0.5}') == \
        {"id": WIDE, "x": 0.5}
    assert jsontext.loads('[-18446744073709551617]') == [-(2**64) - 1]
    assert jsontext.loads(b'{"n": 9223372036854775807}') == {"n": 2**63 - 1}  # orjson's
    for bad in (b'{"a": NaN, "id": 1234567890123456789012}', b"[1234567890123456789012",
                b"\xff[1234567890123456789012]", b'{"a": NaN}', b"[1"):
        with pytest.raises(jsontext.DecodeError):
            jsontext.loads(bad)


@pytest.mark.parametrize("text", [
    "[" + "1" * 5000 + "]",  # past Python's 4,300 digits
    '{"x": 1e999, "p": "1234567890123456789"}',
    '["\\ud800", 1234567890123456789012]',
    b"\xef\xbb\xbf[1234567890123456789012]",
], ids=["huge", "infinite", "surrogate", "bom"])
def test_the_exact_reader_refuses_what_orjson_refuses(text):
    """The slow path (19 digits in a row) accepts nothing the fast one would refuse."""
    with pytest.raises(jsontext.DecodeError):
        jsontext.loads(text)


def test_wide_integers_in_rules_filters_and_unique_keys_are_values_like_any(engine):
    from tasks.datatypes import get_data_type
    from tasks.storage.cursor import query_digest
    from tasks.validation.compile import compile_rules
    from tasks.validation.core import validate

    data_type = get_data_type("campaign_performance")
    compile_rules(data_type, {"rules": [
        {"rule": "allowed_values", "field": "campaign_id", "values": [WIDE]}]})
    assert query_digest({"filters": {"spend": {"gte": WIDE}}}) != \
        query_digest({"filters": {"spend": {"gte": WIDE + 1}}})
    records = [{"campaign_id": f"u{i}", "date": "2025-03-01", "ref": {"id": WIDE}}
               for i in range(2)]
    output = validate(records, data_type, {"rules": [{"rule": "unique", "field": "ref"}]})
    assert len(output.rejected) == 2  # the same key twice


def test_dumps_writes_wide_integers_as_orjson_writes_the_rest():
    from datetime import date
    from decimal import Decimal

    value = {"b": WIDE, "a": [Decimal("1.10"), date(2025, 3, 1), None, "é"]}
    text = jsontext.dumps(value, sort_keys=True)
    assert text == b'{"a":["1.10","2025-03-01",null,"\xc3\xa9"],"b":' + str(WIDE).encode() + b"}"
    assert jsontext.plain(value) == {"b": WIDE, "a": ["1.10", "2025-03-01", None, "é"]}
    assert jsontext.dumps([WIDE, float("nan"), float("inf")]) == \
        f"[{WIDE},null,null]".encode()  # as orjson writes them
    deep: list = []
    for _ in range(300):
        deep = [deep]
    with pytest.raises(TypeError):  # past orjson's nesting, as before (the API's 422)
        jsontext.dumps({"id": WIDE, "deep": deep})


def test_an_ndjson_upload_keeps_wide_integers():
    import io

    from tasks.ingestion.files import iter_ndjson_records

    lines = b'{"campaign_id": "a", "crm_ref": 123456789012345678901234567}\n{"campaign_id": "b"}\n'
    chunks = list(iter_ndjson_records(io.BytesIO(lines), chunk_size=10))
    assert chunks == [[{"campaign_id": "a", "crm_ref": WIDE}, {"campaign_id": "b"}]]


def _body(count: int) -> bytes:
    records = [{"campaign_id": f"wide-{count}-{i}", "date": "2025-03-01", "spend": "10",
                "impressions": 100, "clicks": 5, "crm_ref": WIDE + i} for i in range(count)]
    return json.dumps({"source": "generic", "data_type": "campaign_performance",
                       "data": {"records": records}}).encode()


@pytest.mark.parametrize("count", [1, 400], ids=["carried", "by-reference"])
def test_a_wide_integer_in_a_record_is_stored_and_read_back_exactly(
        client, job_waiter, retrieve, count):
    body = _body(count)
    assert (len(body) > 32 * 1024) == (count > 1)  # the batch that rides, and the other
    response = client.post("/api/v1/data_pipeline/ingest", data=body,
                           content_type="application/json",
                           headers={"Idempotency-Key": f"wide-{count}"})
    assert response.status_code == 202, response.get_json()
    job = job_waiter(response.get_json()["job_id"])
    assert job["status"] == "succeeded", job
    assert job["result"]["records_count"] == count
    rows = retrieve({"data_type": "campaign_performance",
                     "filters": {"campaign_id": f"wide-{count}-0"}})["records"]
    assert rows[0]["extra"]["crm_ref"] == WIDE
    # The response's text has every digit (a float would end in zeros).
    raw = client.post("/api/v1/data_pipeline/retrieve", json={
        "data_type": "campaign_performance", "filters": {"campaign_id": f"wide-{count}-0"}})
    assert str(WIDE).encode() in raw.get_data()


def test_a_wide_integer_in_an_integer_column_is_quarantined_with_its_reason(
        client, job_waiter):
    body = json.dumps({"source": "generic", "data_type": "campaign_performance",
                       "data": {"records": [
                           {"campaign_id": "wide-col-1", "date": "2025-03-01",
                            "impressions": WIDE},
                           {"campaign_id": "wide-col-2", "date": "2025-03-01",
                            "impressions": 10}]}}).encode()
    response = client.post("/api/v1/data_pipeline/ingest", data=body,
                           content_type="application/json")
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["job_id"]
    job = job_waiter(job_id)
    assert job["status"] == "succeeded", job
    assert job["result"]["records_rejected"] == 1
    rejected = client.get(f"/api/v1/jobs/{job_id}/rejected").get_json()["records"]
    assert [r["record"]["campaign_id"] for r in rejected] == ["wide-col-1"]
    assert rejected[0]["record"]["impressions"] == WIDE
    assert "impressions" in json.dumps(rejected[0]["reasons"])
