"""/api/v1/data_pipeline: accept batches (202 + job id) and retrieve stored records."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, current_app, request, url_for
from marshmallow import Schema

from tasks import jsontext
from tasks.celery_app import PIPELINE_STAGES
from tasks.datatypes import DATA_TYPES, UnknownDataType, get_data_type
from tasks.ingestion.adapters import (
    PayloadShapeError,
    UnknownSource,
    UnsupportedDataType,
    get_adapter,
)
from tasks.ingestion.core import count_rows
from tasks.ingestion.files import FileFormatError, iter_file_records
from tasks.nul import find_nul
from tasks.processing.options import ProcessingOptionError, check_processing_options
from tasks.storage import db
from tasks.storage.core import StorageOptionError, check_options
from tasks.submit import IdempotencyConflict, TooManyRecords, accept, accept_chunks
from tasks.validation.core import RuleSpecError, compile_rules
from webapp.auth import require_api_key
from webapp.errors import ApiError
from webapp.jsonio import load_body
from webapp.schemas import (
    IngestRequest,
    ProcessRequest,
    StoreRequest,
    ValidateRequest,
)

bp = Blueprint("data_pipeline", __name__, url_prefix="/api/v1/data_pipeline")
bp.before_request(require_api_key)

MAX_IDEMPOTENCY_KEY = 200
FILE_FORMATS = {
    "text/csv": "csv", "application/csv": "csv",
    "application/x-ndjson": "ndjson", "application/jsonl": "jsonl",
    "application/x-jsonlines": "jsonl",
}
OPTION_KEYS = ("validation_rules", "processing_options", "storage_options", "ingestion_options")


def check_request(body: dict[str, Any], stages: tuple[str, ...]) -> int:
    """Everything that can be known before accepting: returns the number of records.

    Unknown data types, sources, payload shapes, rules and table names are 422 here,
    so a job that is accepted can only fail on its data.
    """
    try:
        data_type = get_data_type(body["data_type"])
    except UnknownDataType as exc:
        raise ApiError(422, str(exc), details={"field": "data_type",
                                               "allowed": sorted(DATA_TYPES)}) from None
    data = body["data"]
    if isinstance(data, Mapping) and "records" in data:
        count = _records_count(data)
    if "ingest" in stages:
        try:
            count = count_rows(data, body.get("source"), data_type.name)
        except UnknownSource as exc:
            raise ApiError(422, str(exc), details={"field": "source"}) from None
        except UnsupportedDataType as exc:
            raise ApiError(422, str(exc), details={"field": "data_type",
                                                   "allowed": exc.supported}) from None
        except PayloadShapeError as exc:
            raise ApiError(422, str(exc), details={"field": "data"}) from None
    else:
        count = _records_count(data)
    if count > current_app.config["MAX_RECORDS"]:
        raise ApiError(413, f"{count} records in one request; the limit is "
                            f"{current_app.config['MAX_RECORDS']}",
                       details={"limit": current_app.config["MAX_RECORDS"]})
    try:
        if "validate" in stages:
            compile_rules(data_type, body.get("validation_rules"))
        if "process" in stages:
            check_processing_options(data_type, body.get("processing_options"))
        if "store" in stages:
            check_options(data_type, body.get("storage_options"))
    except (RuleSpecError, StorageOptionError, ProcessingOptionError) as exc:
        raise ApiError(422, str(exc), details=exc.details) from None
    return count


def _records_count(data: Any) -> int:
    records = data.get("records") if isinstance(data, Mapping) else None
    if not isinstance(records, list):
        raise ApiError(422, "data.records must be a list of objects",
                       details={"field": "data.records"})
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ApiError(422, f"data.records[{index}] must be an object",
                           details={"field": f"data.records[{index}]"})
    return len(records)


def _idempotency(kind: str, body: dict[str, Any]) -> tuple[str | None, str | None]:
    """The Idempotency-Key header and a hash of the request it stands for."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None, None
    key = key.strip()
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise ApiError(422, f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters",
                       details={"field": "Idempotency-Key"})
    if not key.isprintable():  # a NUL (PostgreSQL cannot store it) or another control
        raise ApiError(422, "Idempotency-Key must be printable text, without control "
                       "characters", details={"field": "Idempotency-Key"})
    canonical = jsontext.dumps({"kind": kind, "body": body}, sort_keys=True)
    return key, hashlib.sha256(canonical).hexdigest()


def _accept(kind: str, stages: tuple[str, ...], schema: Schema):  # type: ignore[no-untyped-def]
    body = load_body(schema)
    count = check_request(body, stages)
    options = {key: body[key] for key in OPTION_KEYS if body.get(key) is not None}
    # Kept with the job, in text and jsonb, which cannot hold a NUL.
    for key, value in [("source", body.get("source")), *options.items()]:
        if (where := find_nul(value, key)) is not None:
            raise ApiError(422, f"{where}: text with a NUL character (U+0000)",
                           details={"field": where})
    key, request_hash = _idempotency(kind, body)
    try:
        job = accept(
            db.get_engine(), current_app.extensions["celery"],
            kind=kind, stages=stages, data_type=body["data_type"], source=body.get("source"),
            data=body["data"], records_count=count, options=options,
            chunk_records=current_app.config["CHUNK_RECORDS"],
            idempotency_key=key, request_hash=request_hash,
        )
    except IdempotencyConflict as exc:
        raise ApiError(409, str(exc), details={"job_id": exc.job_id}) from None
    return _accepted(job, count)


def _accepted(job: dict[str, Any], count: int):  # type: ignore[no-untyped-def]
    """The contract's 202 answer for an accepted job."""
    status_url = url_for("jobs.get_job", job_id=job["id"], _external=False)
    response: dict[str, Any] = {
        "success": True,
        "job_id": job["id"],
        "status": job["status"],
        "status_url": status_url,
        "data_type": job["data_type"],
        "result": {"records_count": count, "status": job["status"]},
    }
    if job["source"] is not None:
        response["source"] = job["source"]
    headers = {"Location": status_url}
    if job["replayed"]:
        headers["Idempotent-Replayed"] = "true"
    return response, 202, headers


def _accept_file(file_format: str):  # type: ignore[no-untyped-def]
    """A CSV or NDJSON body, streamed to durable storage one chunk at a time."""
    settings = current_app.config["SETTINGS"]
    request.max_content_length = settings.max_file_bytes
    source, data_type = request.args.get("source"), request.args.get("data_type")
    if not data_type:
        raise ApiError(422, "a file upload needs ?data_type=... (and usually ?source=...)",
                       details={"field": "data_type", "allowed": sorted(DATA_TYPES)})
    try:
        get_data_type(data_type)
        get_adapter(source, data_type)
    except UnknownDataType as exc:
        raise ApiError(422, str(exc), details={"field": "data_type",
                                               "allowed": sorted(DATA_TYPES)}) from None
    except UnknownSource as exc:
        raise ApiError(422, str(exc), details={"field": "source"}) from None
    except UnsupportedDataType as exc:
        raise ApiError(422, str(exc), details={"field": "data_type",
                                               "allowed": exc.supported}) from None
    chunks = iter_file_records(request.stream, file_format, settings.chunk_records)
    try:
        job = accept_chunks(
            db.get_engine(), current_app.extensions["celery"], chunks=chunks,
            data_type=data_type, source=source, max_records=settings.max_file_records,
        )
    except FileFormatError as exc:
        raise ApiError(422, f"{file_format} body: {exc}",
                       details={"line": exc.line, "format": file_format}) from None
    except TooManyRecords as exc:
        raise ApiError(413, str(exc), details={"limit": exc.limit}) from None
    return _accepted(job, job["records_count"])


@bp.post("/ingest")
def ingest():  # type: ignore[no-untyped-def]
    """Run the whole chain ingest → validate → process → store on a batch.

    A JSON body as in the seed, or a file: `text/csv` or `application/x-ndjson` with
    `?source=...&data_type=...`, streamed without holding the whole body in memory.
    """
    file_format = FILE_FORMATS.get(request.mimetype or "")
    if file_format:
        return _accept_file(file_format)
    return _accept("pipeline", PIPELINE_STAGES, IngestRequest())


@bp.post("/validate")
def validate():  # type: ignore[no-untyped-def]
    """Validate a batch of canonical records; invalid ones are quarantined."""
    return _accept("validate", ("validate",), ValidateRequest())


@bp.post("/process")
def process():  # type: ignore[no-untyped-def]
    """Process a batch: types, dedup, derived metrics."""
    return _accept("process", ("process",), ProcessRequest())


@bp.post("/store")
def store():  # type: ignore[no-untyped-def]
    """Store a batch of processed records in the data type's table."""
    return _accept("store", ("store",), StoreRequest())
