"""Keyset pages: `next_cursor` walks every row once in the requested order, NULLs included;
a cursor that was altered or belongs to another query is refused."""

from __future__ import annotations

import base64
import random
from decimal import Decimal
from typing import Any

import orjson
import pytest

from tasks.datatypes import CAMPAIGN_PERFORMANCE
from tasks.storage.retrieve import retrieve
from tests.test_retrieve import campaign_rows, query
from tests.test_storage_upsert import store_rows


def walk(client, body: dict[str, Any]) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Every page of `body` by cursor; checks what each page says about the others."""
    first = query(client, body)
    pages, token = [first], first["next_cursor"]
    while token:
        page = query(client, {**body, "cursor": token})
        assert page["next_offset"] is None and page["offset"] == 0
        assert page["total_count"] == first["total_count"]  # counted once, carried along
        pages.append(page)
        token = page["next_cursor"]
    return [record for page in pages for record in page["records"]]


@pytest.fixture
def campaigns(engine, clean_tables):  # type: ignore[no-untyped-def]
    store_rows(engine, campaign_rows())


@pytest.mark.usefixtures("campaigns")
@pytest.mark.parametrize("sort", [[], ["-date", "campaign_id"], ["campaign_id", "-spend"],
                                  ["-id"], ["account_id", "date"]])
def test_cursor_pages_equal_one_big_page(client, sort):
    body = {"sort": sort, "limit": 5, "fields": ["id", "campaign_id", "date", "spend"]}
    everything = query(client, {**body, "limit": 1000})["records"]
    assert len(everything) == 37
    assert walk(client, body) == everything


@pytest.mark.usefixtures("campaigns")
def test_a_cursor_with_filters_and_projection_that_leaves_the_sort_keys_out(client):
    body = {"filters": {"account_id": "a1", "date_range": {"start": "2023-10-01",
                                                          "end": "2023-10-31"}},
            "sort": ["-date", "campaign_id"], "fields": ["spend"], "limit": 3}
    walked = walk(client, body)
    assert walked == query(client, {**body, "limit": 100})["records"]
    assert len(walked) == 20 and set(walked[0]) == {"spend"}


def _tamper(token: str) -> list[str]:
    body, signature = token.split(".")
    payload = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["k"][0] = "2099-01-01"
    forged = base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    # The last character alone can change bits the decoder ignores: change one before it
    # too (and the spelling alone must be refused as well).
    changed = signature[:5] + ("A" if signature[5] != "A" else "B") + signature[6:]
    return [f"{forged}.{signature}", f"{body}.{flipped}", f"{body}.{changed}", token[:-3],
            body, "x.y", "..", "not a cursor", token + "a", "é" * 10 + "." + signature]


@pytest.mark.usefixtures("campaigns")
def test_a_tampered_cursor_is_422(client):
    body = {"sort": ["-date"], "limit": 5}
    token = query(client, body)["next_cursor"]
    for bad in _tamper(token):
        error = query(client, {**body, "cursor": bad}, 422)
        assert error["details"]["field"] == "cursor", bad


@pytest.mark.usefixtures("campaigns")
def test_a_cursor_only_fits_its_own_query(client):
    token = query(client, {"sort": ["-date"], "limit": 5})["next_cursor"]
    for other in ({"sort": ["date"]}, {"sort": ["-date"], "filters": {"account_id": "a1"}},
                  {"sort": ["-date"], "offset": 5},
                  {"group_by": ["campaign_id"], "metrics": ["spend"]}):
        error = query(client, {**other, "limit": 5, "cursor": token}, 422)
        assert error["details"]["field"] == "cursor"
    fine = query(client, {"sort": ["-date"], "limit": 5, "cursor": token, "fields": ["id"]})
    assert fine["records_count"] == 5  # the projection may change between pages


SORTS = [["campaign_name"], ["-campaign_name"], ["date", "-spend"], ["-date", "campaign_name"],
         ["spend", "campaign_name", "-date"], ["-spend", "-campaign_name"], ["currency", "-id"]]


def _expected(rows: list[dict[str, Any]], sort: list[str]) -> list[int]:
    """Python's order for `sort`: NULL above every value, as PostgreSQL sorts; then id."""
    ordered = sorted(rows, key=lambda r: r["id"])
    for item in reversed(sort):
        name, descending = item.lstrip("-"), item.startswith("-")
        ordered.sort(key=lambda r, n=name: (r[n] is None, r[n] if r[n] is not None else 0),
                     reverse=descending)
    return [r["id"] for r in ordered]


@pytest.mark.usefixtures("clean_tables")
@pytest.mark.parametrize("sort", SORTS)
def test_keyset_order_with_nulls_matches_a_plain_sort(engine, sort):
    rng = random.Random(7)
    records = []
    for i in range(150):  # few distinct values, many NULLs: lots of ties to break
        records.append({
            "source": "generic", "campaign_id": f"k{i:03d}",
            "campaign_name": rng.choice([None, "alpha", "bravo", "charlie"]),
            "date": rng.choice([None, "2023-01-05", "2023-02-10", "2024-12-31"]),
            "spend": rng.choice([None, "1.5", "2", "30"]),
            "currency": rng.choice([None, "EUR", "USD"]),
        })
    store_rows(engine, records)
    with engine.connect() as conn:
        everything = retrieve(conn, CAMPAIGN_PERFORMANCE, limit=1000,
                              fields=["id", "campaign_name", "date", "spend", "currency"])
        expected = _expected(everything["records"], sort)
        walked, token = [], None
        while True:
            page = retrieve(conn, CAMPAIGN_PERFORMANCE, sort=sort, fields=["id"], limit=7,
                            cursor_token=token)
            walked += [r["id"] for r in page["records"]]
            token = page["next_cursor"]
            if token is None:
                break
    assert walked == expected


def test_cursor_values_round_trip_their_types(engine):
    from tasks.storage.keyset import SortKey, dump_value, load_values

    keys = [SortKey("spend", "decimal", False), SortKey("date", "date", True),
            SortKey("campaign_name", "text", False), SortKey("id", "integer", False)]
    values = [Decimal("0.10"), None, " padded ", 42]
    assert load_values(keys, [dump_value(v) for v in values]) == values


@pytest.mark.usefixtures("clean_tables")
def test_an_unpartitioned_table_pages_and_aggregates_the_same_way(client, engine):
    from tasks.datatypes import CRM_DEALS

    store_rows(engine, [{"source": "hubspot", "deal_id": f"d{i}", "stage": "won" if i % 3
                         else "lost", "amount": str(i * 10),
                         "close_date": f"2024-0{1 + i % 5}-01" if i % 4 else None}
                        for i in range(23)], CRM_DEALS)
    body = {"data_type": "crm_deals", "sort": ["-close_date"], "fields": ["deal_id"],
            "limit": 4}
    first = query(client, body)
    walked, token = first["records"], first["next_cursor"]
    while token:
        page = query(client, {**body, "cursor": token})
        walked += page["records"]
        token = page["next_cursor"]
    assert walked == query(client, {**body, "limit": 100})["records"]
    assert len(walked) == 23
    stages = query(client, {"data_type": "crm_deals", "group_by": ["stage"],
                            "metrics": ["amount"]})["records"]
    assert stages == [{"stage": "lost", "amount": sum(i * 10 for i in range(0, 23, 3))},
                      {"stage": "won", "amount": sum(i * 10 for i in range(23) if i % 3)}]


@pytest.mark.usefixtures("clean_tables")
def test_pages_sorted_by_a_long_text_reach_every_row(client, engine):
    """The cursor carries the sort values of the page's last row: a name of 20,000
    characters made a cursor the API then refused, and the rows after it unreachable."""
    rows = campaign_rows()[:6]
    for n, row in enumerate(rows):
        row["campaign_name"] = f"{n}" + "x" * 20_000
    store_rows(engine, rows)
    body = {"sort": ["campaign_name"], "limit": 2, "fields": ["id", "campaign_name"]}
    assert len(walk(client, body)) == 6
