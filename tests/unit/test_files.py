"""Streaming CSV and NDJSON readers, and their rows going through the source adapters."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from tasks.ingestion.core import ingest
from tasks.ingestion.files import (
    CsvFormatError,
    FileFormatError,
    NdjsonFormatError,
    iter_csv_records,
    iter_file_records,
    iter_ndjson_records,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"


class CountingStream(io.BytesIO):
    """A binary stream that remembers how far it has been read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.high_water = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.high_water = max(self.high_water, self.tell())
        return chunk

    def read1(self, size: int = -1) -> bytes:
        chunk = super().read1(size)
        self.high_water = max(self.high_water, self.tell())
        return chunk

    def readline(self, size: int | None = -1) -> bytes:
        line = super().readline(size)
        self.high_water = max(self.high_water, self.tell())
        return line

    def __next__(self) -> bytes:
        line = super().__next__()
        self.high_water = max(self.high_water, self.tell())
        return line


def csv_rows(text: str, chunk_size: int = 100, **kwargs: object) -> list[dict]:
    stream = io.BytesIO(text.encode())
    return [row for chunk in iter_csv_records(stream, chunk_size, **kwargs) for row in chunk]


# --- CSV --------------------------------------------------------------------------------


def test_csv_rows_empty_cells_and_short_rows() -> None:
    text = "\ufeffcampaign_id, spend ,impressions\r\n1,10.5,100\r\n2,,\r\n\r\n3\r\n"
    assert csv_rows(text) == [
        {"campaign_id": "1", "spend": "10.5", "impressions": "100"},
        {"campaign_id": "2", "spend": None, "impressions": None},
        {"campaign_id": "3", "spend": None, "impressions": None},
    ]


def test_csv_quoted_fields_keep_commas_and_newlines() -> None:
    text = 'campaign_id,campaign_name\n1,"Sale, ""big""\nsecond line"\n'
    assert csv_rows(text) == [{"campaign_id": "1", "campaign_name": 'Sale, "big"\nsecond line'}]


def test_csv_dotted_headers_are_unflattened() -> None:
    text = "campaign.id,metrics.cost_micros,metrics.clicks,adGroupAd.ad.id\n1,2500000,,9\n"
    assert csv_rows(text) == [{"campaign": {"id": "1"},
                               "metrics": {"cost_micros": "2500000", "clicks": None},
                               "adGroupAd": {"ad": {"id": "9"}}}]
    assert csv_rows(text, unflatten=False) == [{
        "campaign.id": "1", "metrics.cost_micros": "2500000", "metrics.clicks": None,
        "adGroupAd.ad.id": "9"}]


def test_csv_chunks() -> None:
    text = "a\n" + "".join(f"{i}\n" for i in range(5))
    chunks = list(iter_csv_records(io.BytesIO(text.encode()), 2))
    assert [[row["a"] for row in chunk] for chunk in chunks] == [["0", "1"], ["2", "3"], ["4"]]
    assert list(iter_csv_records(io.BytesIO(b""), 2)) == []
    assert list(iter_csv_records(io.BytesIO(b"a,b\n"), 2)) == []


@pytest.mark.parametrize("text,line,message", [
    ("a,b\n1,2\n1,2,3\n", 3, "3 fields but the header has 2"),
    ("a,b\n1,2\n\n4,5,6,7\n", 4, "4 fields but the header has 2"),
    ("a,b,a\n1,2,3\n", 1, "duplicate column names: a"),
    ("a,,b\n1,2,3\n", 1, "column 2 of the header has no name"),
    ("\n\na,a.b\n1,2\n", 3, "column 'a' is also the parent of 'a.b'"),
    ("a,b.\n1,2\n", 1, "column 'b.' has an empty name part"),
    ('a,b\n1,"2"x\n', 2, "malformed CSV"),
])
def test_csv_errors_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(CsvFormatError) as info:
        csv_rows(text)
    assert info.value.line == line
    assert str(info.value).startswith(f"line {line}: ")
    assert message in str(info.value)
    assert isinstance(info.value, FileFormatError) and isinstance(info.value, ValueError)


def test_csv_invalid_utf8_is_a_format_error() -> None:
    with pytest.raises(CsvFormatError, match="not valid text"):
        list(iter_csv_records(io.BytesIO(b"a,b\n1,\xff\xfe\n"), 10))


def test_csv_is_read_incrementally_and_the_stream_is_left_open() -> None:
    body = "".join(f"{i},campaign {i},{i * 10}\n" for i in range(20000))
    stream = CountingStream(("campaign_id,campaign_name,spend\n" + body).encode())
    chunks = iter_csv_records(stream, 10)
    first = next(chunks)
    assert len(first) == 10
    assert stream.high_water < len(stream.getvalue()) // 10
    assert sum(len(chunk) for chunk in chunks) == 20000 - 10
    assert not stream.closed


def test_csv_generator_closed_early_leaves_the_stream_open() -> None:
    stream = io.BytesIO(b"a\n1\n2\n3\n")
    chunks = iter_csv_records(stream, 1)
    next(chunks)
    chunks.close()
    assert not stream.closed


# --- NDJSON -----------------------------------------------------------------------------


def test_ndjson_records_blank_lines_and_bom() -> None:
    data = b'\xef\xbb\xbf{"a": 1}\n\n  \r\n{"a": 2.5, "b": [1]}\r\n{"a": "x"}'
    chunks = list(iter_ndjson_records(io.BytesIO(data), 2))
    assert chunks == [[{"a": 1}, {"a": 2.5, "b": [1]}], [{"a": "x"}]]


@pytest.mark.parametrize("data,line,message", [
    (b'{"a": 1}\n\n{"a": \n{"a": 2}\n', 3, "not valid JSON"),
    (b'{"a": 1}\n[1, 2]\n', 2, "expected a JSON object, got list"),
    (b'"text"\n', 1, "expected a JSON object, got str"),
    (b'{"a": "\xff"}\n', 1, "not valid JSON"),
])
def test_ndjson_errors_name_the_line(data: bytes, line: int, message: str) -> None:
    with pytest.raises(NdjsonFormatError) as info:
        list(iter_ndjson_records(io.BytesIO(data), 10))
    assert info.value.line == line
    assert str(info.value).startswith(f"line {line}: {message}")


def test_ndjson_is_read_incrementally() -> None:
    stream = CountingStream(b"".join(b'{"campaign_id": "%d"}\n' % i for i in range(100_000)))
    chunks = iter_ndjson_records(stream, 100)
    assert len(next(chunks)) == 100
    assert stream.high_water < len(stream.getvalue()) // 10
    assert sum(len(chunk) for chunk in chunks) == 100_000 - 100


def test_lines_longer_than_a_read_and_lines_across_reads() -> None:
    from tasks.ingestion.files import _lines

    long_line = b'{"campaign_id": "' + b"x" * 300_000 + b'"}'
    data = b'{"a": 1}\r\n' + long_line + b"\n\n" + b'{"b": 2}'  # no final newline
    assert list(_lines(io.BytesIO(data), 1000)) == [b'{"a": 1}\r', long_line, b"", b'{"b": 2}']
    many = b"\n".join(b"%d" % i for i in range(10_000)) + b"\n"
    assert list(_lines(io.BytesIO(many), 7)) == [b"%d" % i for i in range(10_000)]
    records = [r for chunk in iter_ndjson_records(io.BytesIO(data), 10) for r in chunk]
    assert [len(r.get("campaign_id", "")) for r in records] == [0, 300_000, 0]


def test_chunk_size_and_format_are_checked() -> None:
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        next(iter_ndjson_records(io.BytesIO(b"{}\n"), 0))
    with pytest.raises(ValueError, match="unknown file format 'xlsx'"):
        iter_file_records(io.BytesIO(b""), "xlsx", 10)
    assert list(iter_file_records(io.BytesIO(b'{"a": 1}\n'), "jsonl", 10)) == [[{"a": 1}]]


# --- Files through the adapters ---------------------------------------------------------


def ingest_file(name: str, file_format: str, source: str, data_type: str) -> list[dict]:
    records = []
    with (FIXTURES / name).open("rb") as stream:
        for chunk in iter_file_records(stream, file_format, 1):
            output = ingest({"records": chunk}, source, data_type)
            assert output.rejected == []
            records.extend(output.records)
    return records


def test_google_ads_csv_export_with_gaql_headers() -> None:
    first, second = ingest_file("google_ads_export.csv", "csv", "google_ads",
                                "campaign_performance")
    assert first == {
        "source": "google_ads", "account_id": "1234567890", "currency": "EUR",
        "campaign_id": "111", "campaign_name": "Brand Search", "date": date(2025, 1, 15),
        "impressions": 1234, "clicks": 56, "spend": Decimal("130.319306"),
        "conversions": Decimal(3), "conversion_value": Decimal("120.5"),
    }
    assert second == {
        "source": "google_ads", "account_id": "1234567890", "currency": "EUR",
        "campaign_id": "222", "campaign_name": "Generic Search", "date": date(2025, 1, 15),
        "impressions": 10, "clicks": 0, "spend": Decimal(0), "conversions": None,
        "conversion_value": None,
    }


def test_meta_ads_csv_export_with_action_columns() -> None:
    first, second = ingest_file("meta_ads_export.csv", "csv", "meta_ads", "campaign_performance")
    assert first == {
        "source": "meta_ads", "campaign_id": "23851234567890123", "campaign_name": "Spring Sale",
        "date": date(2025, 3, 14), "spend": Decimal("5339.5"), "impressions": 361324,
        "clicks": 4210, "conversions": Decimal(43), "conversion_value": Decimal("3870.10"),
        "extra": {"actions": {"omni_purchase": "43"},
                  "action_values": {"omni_purchase": "3870.10"},
                  "platform_ctr": "1.165159"},
    }
    assert second == {
        "source": "meta_ads", "campaign_id": "23851234567890456",
        "campaign_name": "Retargeting, EU", "date": date(2025, 3, 14), "spend": Decimal(0),
        "impressions": 1000, "clicks": 0, "conversions": Decimal(0),
        "conversion_value": Decimal(0),
        "extra": {"actions": {"omni_purchase": None}, "action_values": {"omni_purchase": None},
                  "platform_ctr": None},
    }


def test_canonical_ndjson_through_the_meta_adapter() -> None:
    records = ingest_file("campaigns.ndjson", "ndjson", "meta_ads", "campaign_performance")
    assert records == [
        {"source": "meta_ads", "campaign_id": "123", "spend": Decimal("100.0"),
         "impressions": 1000, "clicks": 50, "conversions": Decimal(5)},
        {"source": "meta_ads", "campaign_id": "124", "spend": Decimal("20.5"),
         "impressions": 10, "clicks": 1, "conversions": Decimal(0), "date": date(2025, 1, 15)},
    ]
