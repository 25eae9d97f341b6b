"""`Accept: text/csv`: the same query, streamed as CSV."""

from __future__ import annotations

import csv
import io

import pytest

from tests.test_retrieve import URL, campaign_rows
from tests.test_storage_upsert import store_rows

CSV = {"Accept": "text/csv"}


@pytest.fixture
def campaigns(engine, clean_tables):  # type: ignore[no-untyped-def]
    store_rows(engine, campaign_rows())


def read_csv(response) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


@pytest.mark.usefixtures("campaigns")
def test_csv_streams_every_matching_row_when_no_limit_is_given(client):
    response = client.post(URL, headers=CSV, json={
        "data_type": "campaign_performance", "filters": {"account_id": "a1"},
        "sort": ["campaign_id", "date"], "fields": ["campaign_id", "date", "spend", "ctr"]})
    assert response.is_streamed
    assert 'filename="campaign_performance.csv"' in response.headers["Content-Disposition"]
    rows = read_csv(response)
    assert len(rows) == 24 and list(rows[0]) == ["campaign_id", "date", "spend", "ctr"]
    assert rows[0] == {"campaign_id": "c1", "date": "2023-10-01", "spend": "10.1", "ctr": ""}


@pytest.mark.usefixtures("campaigns")
def test_csv_honours_limit_offset_cursor_and_aggregates(client):
    body = {"data_type": "campaign_performance", "sort": ["-date", "campaign_id"],
            "fields": ["id"], "limit": 5}
    page = client.post(URL, json=body).get_json()["result"]
    as_csv = read_csv(client.post(URL, headers=CSV, json=body))
    assert [int(r["id"]) for r in as_csv] == [r["id"] for r in page["records"]]
    after = client.post(URL, json={**body, "cursor": page["next_cursor"]}).get_json()["result"]
    after_csv = read_csv(client.post(URL, headers=CSV,
                                     json={**body, "cursor": page["next_cursor"]}))
    assert [int(r["id"]) for r in after_csv] == [r["id"] for r in after["records"]]

    groups = read_csv(client.post(URL, headers=CSV, json={
        "data_type": "campaign_performance", "group_by": ["campaign_id"],
        "metrics": ["clicks", "impressions"], "filters": {"account_id": "a1"}}))
    assert [r["campaign_id"] for r in groups] == ["c1", "c2"]
    assert groups[0]["impressions"] == "12000"


@pytest.mark.usefixtures("clean_tables")
def test_csv_cells_cannot_become_spreadsheet_formulas(client, engine):
    store_rows(engine, [{"source": "generic", "campaign_id": "x",
                         "campaign_name": "=HYPERLINK(\"http://evil\")", "extra_note": "a,b"}])
    rows = read_csv(client.post(URL, headers=CSV, json={
        "data_type": "campaign_performance", "fields": ["campaign_name", "extra"]}))
    assert rows[0]["campaign_name"] == "'=HYPERLINK(\"http://evil\")"
    assert rows[0]["extra"] == '{"extra_note":"a,b"}'


def test_csv_requests_with_bad_input_still_answer_json_errors(client):
    response = client.post(URL, headers=CSV, json={"data_type": "campaign_performance",
                                                   "filters": {"colour": "red"}})
    assert response.status_code == 422 and response.mimetype == "application/json"
    assert response.get_json()["error"]["details"]["field"] == "colour"


@pytest.mark.usefixtures("campaigns")
def test_the_stream_gives_its_connection_back(client):
    from tasks.storage import db

    pool = db.get_engine().pool
    before = pool.checkedout()
    for _ in range(3):
        with client.post(URL, headers=CSV, json={"data_type": "campaign_performance"}) as r:
            assert len(read_csv(r)) == 37
    abandoned = client.post(URL, headers=CSV, json={"data_type": "campaign_performance"})
    abandoned.close()  # a client that went away before reading anything
    assert pool.checkedout() == before
