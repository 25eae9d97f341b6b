"""Streaming readers for file ingestion: CSV and NDJSON in, chunks of row dicts out.

Both read the binary stream incrementally (a line at a time), so a file of any size is
held one chunk at a time; the rows then go through a source adapter like any request's
`data.records`. A malformed line raises a FileFormatError (a ValueError) naming the line.

CSV: the first row is the header, with canonical names or the platform's native ones.
Dotted headers are unflattened into nested objects (`metrics.cost_micros` ->
`{"metrics": {"cost_micros": ...}}`, `properties.amount`, `actions.omni_purchase`), so the
adapter that maps the platform's JSON maps its exports too. Empty cells are None; a row
shorter than the header has None for the missing cells. The stream is not closed.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterator
from typing import IO, Any

from tasks import jsontext

_BOM = codecs.BOM_UTF8


class FileFormatError(ValueError):
    """A file that cannot be read as its format; `line` is the 1-based line of the problem."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


class CsvFormatError(FileFormatError):
    pass


class NdjsonFormatError(FileFormatError):
    pass


def _check_chunk_size(chunk_size: int) -> None:
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")


def iter_ndjson_records(
    binary_stream: IO[bytes], chunk_size: int
) -> Iterator[list[dict[str, Any]]]:
    """Chunks of up to `chunk_size` objects, one per non-blank line."""
    _check_chunk_size(chunk_size)
    chunk: list[dict[str, Any]] = []
    for number, line in enumerate(_lines(binary_stream), start=1):
        if number == 1 and line.startswith(_BOM):
            line = line[len(_BOM):]
        if not line or line.isspace():
            continue
        try:
            record = jsontext.loads(line)
        except jsontext.DecodeError as exc:
            raise NdjsonFormatError(number, f"not valid JSON: {exc}") from None
        if not isinstance(record, dict):
            raise NdjsonFormatError(
                number, f"expected a JSON object, got {type(record).__name__}")
        chunk.append(record)
        if len(chunk) >= chunk_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _lines(binary_stream: IO[bytes], block: int = 1 << 16) -> Iterator[bytes]:
    """The stream's lines, read in large blocks: a server's request stream (gunicorn's
    body reader) reads a line at a time in Python, some 15 times slower. A line longer
    than a block is gathered in parts and joined once (linear in its length)."""
    pending: list[bytes] = []  # the start of a line not finished yet
    while True:
        data = binary_stream.read(block)
        if not data:
            break
        lines = data.split(b"\n")
        if len(lines) == 1:
            pending.append(data)
            continue
        if pending:
            pending.append(lines[0])
            lines[0] = b"".join(pending)
        pending = [lines.pop()]
        yield from lines
    rest = b"".join(pending)
    if rest:
        yield rest


def iter_csv_records(
    binary_stream: IO[bytes],
    chunk_size: int,
    *,
    encoding: str = "utf-8-sig",
    delimiter: str = ",",
    unflatten: bool = True,
) -> Iterator[list[dict[str, Any]]]:
    """Chunks of up to `chunk_size` row dicts keyed by the header (dotted names nested)."""
    _check_chunk_size(chunk_size)
    text = io.TextIOWrapper(binary_stream, encoding=encoding, newline="")
    try:
        yield from _read_csv(text, chunk_size, delimiter, unflatten)
    finally:
        text.detach()  # the caller owns the stream: do not close it with the wrapper


def _read_csv(
    text: IO[str], chunk_size: int, delimiter: str, unflatten: bool
) -> Iterator[list[dict[str, Any]]]:
    reader = csv.reader(text, delimiter=delimiter, strict=True)
    try:
        header = next((row for row in reader if row), None)  # leading blank lines skipped
        if header is None:
            return
        build = _row_builder(header, unflatten, reader.line_num)
        width = len(header)
        chunk: list[dict[str, Any]] = []
        for row in reader:
            if not row:
                continue  # a blank line
            if len(row) > width:
                raise CsvFormatError(reader.line_num, f"{len(row)} fields but the header "
                                                      f"has {width}")
            chunk.append(build(row))
            if len(chunk) >= chunk_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
    except csv.Error as exc:
        raise CsvFormatError(reader.line_num, f"malformed CSV: {exc}") from None
    except UnicodeDecodeError as exc:
        raise CsvFormatError(reader.line_num + 1, f"not valid text: {exc}") from None


def _row_builder(
    header: list[str], unflatten: bool, line: int
) -> Callable[[list[str]], dict[str, Any]]:
    names = [name.strip() for name in header]
    for index, name in enumerate(names, start=1):
        if not name:
            raise CsvFormatError(line, f"column {index} of the header has no name")
    if len(set(names)) != len(names):
        duplicates = sorted({name for name in names if names.count(name) > 1})
        raise CsvFormatError(line, f"duplicate column names: {', '.join(duplicates)}")
    width = len(names)
    if not unflatten or not any("." in name for name in names):

        def flat(row: list[str]) -> dict[str, Any]:
            record = {name: value if value != "" else None
                      for name, value in zip(names, row, strict=False)}
            if len(row) < width:
                record.update(dict.fromkeys(names[len(row):]))
            return record

        return flat
    paths = [name.split(".") for name in names]
    _check_paths(paths, line)

    def nested(row: list[str]) -> dict[str, Any]:
        record: dict[str, Any] = {}
        for index, path in enumerate(paths):
            value = row[index] if index < len(row) and row[index] != "" else None
            target = record
            for part in path[:-1]:
                target = target.setdefault(part, {})
            target[path[-1]] = value
        return record

    return nested


def _check_paths(paths: list[list[str]], line: int) -> None:
    """A name cannot be both a value and an object (`a` and `a.b`), nor have empty parts."""
    leaves = {tuple(path) for path in paths}
    for path in paths:
        if not all(path):
            raise CsvFormatError(line, f"column {'.'.join(path)!r} has an empty name part")
        for end in range(1, len(path)):
            if tuple(path[:end]) in leaves:
                raise CsvFormatError(line, f"column {'.'.join(path[:end])!r} is also the "
                                           f"parent of {'.'.join(path)!r}")


READERS = {
    "csv": iter_csv_records,
    "ndjson": iter_ndjson_records,
    "jsonl": iter_ndjson_records,
}


def iter_file_records(
    binary_stream: IO[bytes], file_format: str, chunk_size: int
) -> Iterator[list[dict[str, Any]]]:
    """Chunks of rows from a stream in `file_format` (csv, ndjson or jsonl)."""
    reader = READERS.get(file_format)
    if reader is None:
        raise ValueError(f"unknown file format {file_format!r}; known: {', '.join(READERS)}")
    return reader(binary_stream, chunk_size)
