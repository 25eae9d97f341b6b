"""`flask --app webapp pipeline ...`: ingest files, follow jobs and query records from a shell.

Uses the Python API in the app's context (the same durable path as HTTP: job row and raw
batch committed, then the chain sent to the workers), never HTTP. Progress and notes go to
stderr, results to stdout, so `pipeline ingest data.csv --wait --json | jq` works.

Exit codes: 0 done, 1 the job failed or an error, 2 a usage error, 3 --wait timed out.
"""

from __future__ import annotations

import csv
import io
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import IO, Any

import click
import orjson
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from tasks import jsontext
from tasks.celery_app import PIPELINE_STAGES
from tasks.datatypes import DATA_TYPES, UnknownDataType, get_data_type
from tasks.ingestion.adapters import UnknownSource, UnsupportedDataType, get_adapter
from tasks.ingestion.files import FileFormatError, iter_file_records
from tasks.storage import db, jobs
from tasks.storage.retrieve import MAX_LIMIT, RetrievalError, retrieve
from tasks.storage.schema import jobs_table
from tasks.submit import TooManyRecords, accept, accept_chunks
from webapp.csv_cells import csv_cell
from webapp.errors import ApiError
from webapp.jsonio import dumps
from webapp.views.pipeline import OPTION_KEYS, check_request

EXIT_FAILED, EXIT_TIMEOUT = 1, 3
SUFFIX_FORMATS = {".csv": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "json"}
SNIFF_BYTES = 64 * 1024
BAR_WIDTH = 24
MAX_CELL = 40
POLL_SECONDS = 0.2

pipeline = AppGroup("pipeline", help="Ingest files, follow jobs and query stored records.")
jobs_group = AppGroup("jobs", help="Recent jobs and their stages.")
pipeline.add_command(jobs_group)

# ---------------------------------------------------------------------------- reading input


class _Replay(io.RawIOBase):
    """A stream whose first bytes were read to tell its format: gives them back first."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            size = min(len(buffer), len(self._head))
            buffer[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        data = self._rest.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def sniff_format(head: bytes) -> str:
    """json, ndjson or csv, from the first bytes of an input with no telling name."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"["):
        return "json"
    if text.startswith(b"{"):
        first, newline, rest = text.partition(b"\n")
        if newline and rest.strip():
            try:
                orjson.loads(first)
            except orjson.JSONDecodeError:
                return "json"  # one object over several lines
            return "ndjson"
        return "json"
    return "csv"


def _open_input(stream: IO[bytes], name: str, file_format: str | None) -> tuple[IO[bytes], str]:
    if file_format:
        return stream, file_format
    for suffix, fmt in SUFFIX_FORMATS.items():
        if name.lower().endswith(suffix):
            return stream, fmt
    head = stream.read(SNIFF_BYTES)
    return io.BufferedReader(_Replay(head, stream)), sniff_format(head)


def _check_names(data_type: str | None, source: str | None) -> str:
    if not data_type:
        raise click.UsageError(f"--data-type is required; one of {', '.join(sorted(DATA_TYPES))}")
    try:
        get_data_type(data_type)
        get_adapter(source, data_type)
    except (UnknownDataType, UnknownSource, UnsupportedDataType) as exc:
        raise click.UsageError(str(exc)) from None
    return data_type


def _submit_json(raw: bytes, data_type: str | None, source: str | None) -> dict[str, Any]:
    """A JSON list of records, {"records": [...]}, a platform's response, or a whole request
    body as the API takes it (its data_type, source and options used unless given here)."""
    try:
        document = jsontext.loads(raw)
    except jsontext.DecodeError as exc:
        raise click.ClickException(f"not valid JSON: {exc}") from None
    body: dict[str, Any]
    if isinstance(document, Mapping) and "data" in document and "data_type" in document:
        body = dict(document)
    else:
        data = {"records": document} if isinstance(document, list) else document
        body = {"data": data}
    body["data_type"] = data_type or body.get("data_type")
    body["source"] = source or body.get("source")
    _check_names(body["data_type"], body["source"])
    try:
        count = check_request(body, PIPELINE_STAGES)  # the API's own checks
    except ApiError as exc:
        raise click.ClickException(f"{exc.message} ({exc.details})" if exc.details
                                   else exc.message) from None
    settings = current_app.config["SETTINGS"]
    return accept(
        db.get_engine(), current_app.extensions["celery"], kind="pipeline",
        stages=PIPELINE_STAGES, data_type=body["data_type"], source=body["source"],
        data=body["data"], records_count=count,
        options={key: body[key] for key in OPTION_KEYS if body.get(key) is not None},
        chunk_records=settings.chunk_records,
    )


def _submit_rows(stream: IO[bytes], file_format: str, data_type: str | None,
                 source: str | None) -> dict[str, Any]:
    """CSV or NDJSON, streamed a chunk at a time into the job's durable batch."""
    data_type = _check_names(data_type, source)
    settings = current_app.config["SETTINGS"]
    try:
        return accept_chunks(
            db.get_engine(), current_app.extensions["celery"],
            chunks=iter_file_records(stream, file_format, settings.chunk_records),
            data_type=data_type, source=source, max_records=settings.max_file_records,
        )
    except FileFormatError as exc:
        raise click.ClickException(f"{file_format}: {exc}") from None
    except TooManyRecords as exc:
        raise click.ClickException(str(exc)) from None


# ---------------------------------------------------------------------------- following jobs


def _load_job(job_id: str) -> dict[str, Any] | None:
    with db.get_engine().connect() as conn:
        row = jobs.get(conn, job_id)
    return jobs.to_public(row) if row else None


def stage_lines(job: Mapping[str, Any]) -> list[str]:
    """One line per stage: a bar, records done of total, status (and records out)."""
    progress = job.get("progress") or {}
    lines = []
    for stage in job["stages"]:
        status = stage["status"]
        if status in (jobs.SUCCEEDED, jobs.FAILED) and stage["records_in"] is not None:
            done = total = stage["records_in"]
        elif progress.get("stage") == stage["name"]:
            done, total = progress.get("records_done") or 0, progress.get("records_total")
        else:
            done, total = 0, None
        if status == jobs.SUCCEEDED:
            fraction = 1.0
        elif total:
            fraction = min(1.0, done / total)
        else:
            fraction = 0.0
        filled = int(round(fraction * BAR_WIDTH))
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        counts = f"{done:,}/{total:,}" if total is not None else f"{done:,}/?"
        out = (f"  -> {stage['records_out']:,} out"
               if status == jobs.SUCCEEDED and stage["records_out"] is not None else "")
        lines.append(f"{stage['name']:<9} [{bar}] {counts:>17} records  {status}{out}")
    return lines


class ProgressView:
    """Stage lines on stderr: redrawn in place on a terminal, printed on change elsewhere."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self._drawn: list[str] = []

    def show(self, job: Mapping[str, Any]) -> None:
        lines = stage_lines(job)
        if self.interactive:
            if self._drawn:
                self.stream.write(f"\x1b[{len(self._drawn)}F")  # back to the first line
            self.stream.write("".join(f"\x1b[2K{line}\n" for line in lines))
        else:
            for index, line in enumerate(lines):
                if index >= len(self._drawn) or self._drawn[index] != line:
                    self.stream.write(line + "\n")
        self.stream.flush()
        self._drawn = lines


def follow(job_id: str, timeout: float, view: ProgressView | None) -> dict[str, Any]:
    """Poll the job row until the job finishes; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        job = _load_job(job_id)
        if job is None:
            raise click.ClickException(f"no job {job_id}")
        if view is not None:
            view.show(job)
        if job["status"] in jobs.FINISHED:
            return job
        if time.monotonic() >= deadline:
            raise TimeoutError(job_id)
        time.sleep(POLL_SECONDS)


def _finish(job: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(dumps(job).decode())
    else:
        click.echo(_summary(job))
    if job["status"] == jobs.FAILED:
        sys.exit(EXIT_FAILED)


def _summary(job: Mapping[str, Any]) -> str:
    if job["status"] == jobs.FAILED:
        error = job.get("error") or {}
        return f"job {job['job_id']} failed: {error.get('code')}: {error.get('message')}"
    result = job.get("result") or {}
    labels = {"records_received": "received", "records_rejected": "rejected",
              "inserted": "inserted", "updated": "updated"}
    if not any(key in result for key in labels):
        labels = {"records_count": "records"}
    counts = ", ".join(f"{result[key]:,} {label}" for key, label in labels.items()
                       if isinstance(result.get(key), int))
    return f"job {job['job_id']} {job['status']}" + (f": {counts}" if counts else "")


def _wait_and_finish(job_id: str, timeout: float, as_json: bool, quiet: bool) -> None:
    try:
        job = follow(job_id, timeout, None if quiet else ProgressView())
    except TimeoutError:
        click.echo(f"job {job_id} still running after {timeout:g}s", err=True)
        sys.exit(EXIT_TIMEOUT)
    _finish(job, as_json)


# ---------------------------------------------------------------------------------- commands


@pipeline.command("ingest")
@click.argument("file", type=click.File("rb"))
@click.option("--data-type", help="Data type of the records, e.g. campaign_performance.")
@click.option("--source", help="Platform the records come from, e.g. meta_ads.")
@click.option("--format", "file_format", type=click.Choice(["csv", "ndjson", "json"]),
              help="Format of FILE; by default from its name, or guessed from its start.")
@click.option("--wait", is_flag=True, help="Follow the job's stages until it finishes.")
@click.option("--timeout", type=float, default=3600.0, show_default=True,
              help="Seconds --wait waits.")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@click.option("--quiet", is_flag=True, help="No progress lines while waiting.")
def ingest_command(file: IO[bytes], data_type: str | None, source: str | None,
                   file_format: str | None, wait: bool, timeout: float, as_json: bool,
                   quiet: bool) -> None:
    """Run the whole pipeline on FILE (CSV, NDJSON or JSON; - for stdin)."""
    stream, fmt = _open_input(file, getattr(file, "name", "-") or "-", file_format)
    if fmt == "json":
        job = _submit_json(stream.read(), data_type, source)
    else:
        job = _submit_rows(stream, fmt, data_type, source)
    job_id = job["id"]
    click.echo(f"job {job_id} accepted: {job['records_count']:,} records ({fmt})", err=True)
    if not wait:
        job_public = _load_job(job_id)
        click.echo(dumps(job_public).decode() if as_json else job_id)
        return
    _wait_and_finish(job_id, timeout, as_json, quiet)


@jobs_group.command("list")
@click.option("--status", "statuses", multiple=True,
              type=click.Choice([jobs.QUEUED, jobs.RUNNING, jobs.SUCCEEDED, jobs.FAILED]),
              help="Only jobs with this status (repeatable).")
@click.option("--data-type", help="Only jobs of this data type.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--format", "out_format", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def jobs_list_command(statuses: Sequence[str], data_type: str | None, limit: int,
                      out_format: str) -> None:
    """Recent jobs, newest first."""
    query = select(jobs_table).order_by(jobs_table.c.created_at.desc()).limit(limit)
    if statuses:
        query = query.where(jobs_table.c.status.in_(statuses))
    if data_type:
        query = query.where(jobs_table.c.data_type == data_type)
    with db.get_engine().connect() as conn:
        rows = [jobs.to_public(dict(row)) for row in conn.execute(query).mappings()]
    if out_format == "json":
        click.echo(dumps(rows).decode())
        return
    columns = ["job_id", "status", "kind", "data_type", "source", "records_count",
               "created_at", "finished_at"]
    click.echo(render_table(columns, rows))


@jobs_group.command("show")
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="Follow the job until it finishes.")
@click.option("--timeout", type=float, default=3600.0, show_default=True)
@click.option("--format", "out_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def jobs_show_command(job_id: str, wait: bool, timeout: float, out_format: str) -> None:
    """A job: status, stages with counts, result or error."""
    try:
        job_id = str(uuid.UUID(job_id.strip()))
    except ValueError:
        raise click.ClickException(f"no job {job_id}: not a job id") from None
    job = _load_job(job_id)
    if job is None:
        raise click.ClickException(f"no job {job_id}")
    if wait and job["status"] not in jobs.FINISHED:
        _wait_and_finish(job_id, timeout, out_format == "json", quiet=False)
        return
    if out_format == "json":
        click.echo(dumps(job).decode())
        return
    click.echo(f"job       {job['job_id']}\nstatus    {job['status']}\n"
               f"kind      {job['kind']}\ndata type {job['data_type']}\n"
               f"source    {job['source'] or '-'}\nrecords   {job['records_count']:,}\n"
               f"created   {job['created_at']}\nfinished  {job['finished_at'] or '-'}")
    click.echo("\n".join(stage_lines(job)))
    if job.get("error"):
        click.echo(f"error     {job['error'].get('code')}: {job['error'].get('message')}")
    if job.get("result"):
        click.echo(f"result    {dumps(job['result']).decode()}")


def parse_filters(items: Iterable[str]) -> dict[str, Any]:
    """key=value pairs: a value starting with { or [ is JSON (operators, lists), and
    date_range=START..END is {"start": START, "end": END}."""
    filters: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not key=value", param_hint="--filter")
        if value[:1] in ("{", "["):
            try:
                filters[key] = jsontext.loads(value)
            except jsontext.DecodeError as exc:
                raise click.BadParameter(f"{key}: not valid JSON: {exc}",
                                         param_hint="--filter") from None
        elif key == "date_range" and ".." in value:
            start, _, end = value.partition("..")
            filters[key] = {"start": start or None, "end": end or None}
        else:
            filters[key] = value
    return filters


@pipeline.command("retrieve")
@click.option("--data-type", required=True, help="The data type to query.")
@click.option("--filter", "filter_items", multiple=True, metavar="KEY=VALUE",
              help="Repeatable. campaign_id=123, date_range=2023-10-01..2023-10-31, "
                   "'spend={\"gte\": 10}', 'source=[\"meta_ads\", \"google_ads\"]'.")
@click.option("--sort", multiple=True, help="Column to sort by, -column descending (repeatable).")
@click.option("--field", "field_names", multiple=True, help="Column to show (repeatable).")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True)
@click.option("--format", "out_format", type=click.Choice(["table", "csv", "json"]),
              default="table", show_default=True)
def retrieve_command(data_type: str, filter_items: Sequence[str], sort: Sequence[str],
                     field_names: Sequence[str], limit: int, offset: int,
                     out_format: str) -> None:
    """Query stored records, as the API's /retrieve does."""
    try:
        declaration = get_data_type(data_type)
    except UnknownDataType as exc:
        raise click.UsageError(f"{exc}; one of {', '.join(sorted(DATA_TYPES))}") from None
    filters = parse_filters(filter_items)
    try:
        with db.get_engine().connect() as conn:
            page = retrieve(conn, declaration, filters=filters, sort=list(sort),
                            fields=list(field_names) or None, limit=limit, offset=offset)
    except RetrievalError as exc:
        raise click.ClickException(f"{exc} ({dumps(exc.details).decode()})") from None
    records = page["records"]
    if out_format == "json":
        click.echo(dumps(records).decode())
    elif out_format == "csv":
        click.echo(render_csv(records, list(field_names)), nl=False)
    else:
        click.echo(render_table(_columns(records, field_names), records))
    more = f"; next --offset {page['next_offset']}" if page.get("next_offset") else ""
    total = page.get("total_count")
    click.echo(f"{len(records):,} of {total if total is not None else '?'} records{more}",
               err=True)


# ---------------------------------------------------------------------------------- rendering


def _columns(records: Sequence[Mapping[str, Any]], wanted: Sequence[str]) -> list[str]:
    if wanted:
        return list(wanted)
    return list(records[0]) if records else []


def cell(value: Any) -> str:
    """A value as text: '' for null, ISO dates, plain numbers, JSON for objects."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else str(value)
    if isinstance(value, dict | list):
        return dumps(value).decode()
    return str(value)


def render_table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    if not columns:
        return "(no records)"
    texts = [[_clip(cell(row.get(name))) for name in columns] for row in rows]
    widths = [max([len(name)] + [len(r[i]) for r in texts]) for i, name in enumerate(columns)]
    lines = ["  ".join(name.upper().ljust(w) for name, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(t.ljust(w) for t, w in zip(r, widths, strict=True)) for r in texts]
    return "\n".join(line.rstrip() for line in lines)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_CELL else text[:MAX_CELL - 1] + "…"


def render_csv(records: Sequence[Mapping[str, Any]], wanted: Sequence[str]) -> str:
    columns = _columns(records, wanted)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if columns:
        writer.writerow(columns)
    for record in records:
        writer.writerow([csv_cell(record.get(name)) for name in columns])
    return buffer.getvalue()
