"""The OpenAPI 3 document (/openapi.json) and interactive docs (/docs).

Request bodies come from the marshmallow envelopes in webapp/schemas.py through apispec, so
the document follows the code; responses are described by the schemas below. Operations are
keyed by Flask endpoint and their paths are read from the app's url_map, so a route moved in
its view module moves here too, and a route with no entry here is caught by the test that
compares the document with the url_map.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, current_app
from marshmallow import INCLUDE, Schema, fields, validate
from werkzeug.routing import Rule

from tasks.storage import jobs as job_store
from webapp import schemas
from webapp.views.jobs import MAX_PAGE, MAX_WAIT_SECONDS
from webapp.views.pipeline import FILE_FORMATS, MAX_IDEMPOTENCY_KEY

OPENAPI_VERSION = "3.0.3"
API_VERSION = "1.0.0"
SWAGGER_UI = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5"

bp = Blueprint("openapi", __name__)
_VARIABLE = re.compile(r"<(?:[^<>]*:)?([A-Za-z_][A-Za-z0-9_]*)>")

# ---------------------------------------------------------------- the seed's examples, verbatim

SEED_RECORD = {"campaign_id": "123", "spend": 100.0, "impressions": 1000, "clicks": 50,
               "conversions": 5}
SEED_EXAMPLES: dict[str, dict[str, Any]] = {
    "ingest": {
        "source": "meta_ads",
        "data_type": "campaign_performance",
        "data": {"records": [SEED_RECORD]},
    },
    "process": {
        "data_type": "campaign_performance",
        "data": {"records": [SEED_RECORD]},
        "processing_options": {"calculate_metrics": True, "enrich_with_audience_data": True},
    },
    "validate": {
        "data_type": "campaign_performance",
        "data": {"records": [SEED_RECORD]},
        "validation_rules": {
            "required_fields": ["campaign_id", "spend", "impressions", "clicks", "conversions"],
            "numeric_fields": ["spend", "impressions", "clicks", "conversions"],
        },
    },
    "store": {
        "data_type": "campaign_performance",
        "data": {"records": [SEED_RECORD]},
        "storage_options": {"table_name": "campaign_performance", "upsert": True},
    },
    "retrieve": {
        "data_type": "campaign_performance",
        "filters": {"campaign_id": "123",
                    "date_range": {"start": "2023-10-01", "end": "2023-10-31"}},
        "limit": 100,
        "offset": 0,
    },
}
EXAMPLE_JOB_ID = "6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f"

# ------------------------------------------------------------------------- response schemas


class _Open(Schema):
    """Responses may gain fields: clients must ignore the ones they do not know."""

    class Meta:
        unknown = INCLUDE


JOB_STATUSES = [job_store.QUEUED, job_store.RUNNING, job_store.SUCCEEDED, job_store.FAILED]
STAGE_STATUSES = [job_store.PENDING, *JOB_STATUSES[1:]]


class ErrorDetail(_Open):
    code = fields.String(required=True, metadata={"example": "invalid_request"})
    message = fields.String(required=True, metadata={"example": "invalid request: data"})
    details = fields.Raw(required=True, allow_none=True, metadata={
        "description": "what was wrong, e.g. {\"field\": ...}; null when nothing to add"})


class Error(_Open):
    """The one shape of every error answer."""

    success = fields.Boolean(required=True, validate=validate.OneOf([False]))
    error = fields.Nested(ErrorDetail, required=True)


class AcceptedResult(_Open):
    records_count = fields.Integer(required=True, metadata={"example": 1})
    status = fields.String(required=True, validate=validate.OneOf(JOB_STATUSES))


class Accepted(_Open):
    """202: the batch is stored durably and its job queued."""

    success = fields.Boolean(required=True, validate=validate.OneOf([True]))
    job_id = fields.UUID(required=True)
    status = fields.String(required=True, validate=validate.OneOf(JOB_STATUSES), metadata={
        "description": "queued; or, for a replayed Idempotency-Key, the job's status now"})
    status_url = fields.String(required=True, metadata={
        "example": f"/api/v1/jobs/{EXAMPLE_JOB_ID}"})
    data_type = fields.String(required=True, metadata={"example": "campaign_performance"})
    source = fields.String(metadata={"example": "meta_ads",
                                     "description": "present when the request named one"})
    result = fields.Nested(AcceptedResult, required=True)


class ReplayAccepted(Accepted):
    """202 for a replay: a new job for the corrected records."""

    source = fields.String(required=True, allow_none=True)
    replay_of = fields.UUID(required=True, metadata={"description": "the job replayed"})


class Progress(_Open):
    stage = fields.String(required=True, metadata={"example": "store"})
    records_done = fields.Integer(required=True, metadata={"example": 40000})
    records_total = fields.Integer(required=True, allow_none=True,
                                   metadata={"example": 100000})


class Stage(_Open):
    name = fields.String(required=True, metadata={"example": "validate"})
    status = fields.String(required=True, validate=validate.OneOf(STAGE_STATUSES))
    records_in = fields.Integer(required=True, allow_none=True)
    records_out = fields.Integer(required=True, allow_none=True)
    started_at = fields.String(required=True, allow_none=True, metadata={"format": "date-time"})
    finished_at = fields.String(required=True, allow_none=True,
                                metadata={"format": "date-time"})
    result = fields.Dict(required=True, allow_none=True, metadata={
        "description": "the seed's fields: ingested_at / validated_at + validation_passed + "
                       "issues_found / processed_at / stored_at, records_count, status"})


class Job(_Open):
    """A job as GET /api/v1/jobs/{job_id} shows it."""

    success = fields.Boolean(required=True, validate=validate.OneOf([True]))
    job_id = fields.UUID(required=True)
    kind = fields.String(required=True, metadata={"example": "pipeline"})
    status = fields.String(required=True, validate=validate.OneOf(JOB_STATUSES))
    data_type = fields.String(required=True)
    source = fields.String(required=True, allow_none=True)
    records_count = fields.Integer(required=True)
    stages = fields.List(fields.Nested(Stage), required=True)
    result = fields.Dict(required=True, allow_none=True)
    error = fields.Nested(ErrorDetail, required=True, allow_none=True)
    created_at = fields.String(required=True, metadata={"format": "date-time"})
    started_at = fields.String(required=True, allow_none=True, metadata={"format": "date-time"})
    finished_at = fields.String(required=True, allow_none=True,
                                metadata={"format": "date-time"})
    progress = fields.Nested(Progress, metadata={
        "description": "while a stage runs: its records done of records_total"})


class RetrieveResult(_Open):
    retrieved_at = fields.String(required=True, metadata={"format": "date-time"})
    records = fields.List(fields.Dict(), required=True)
    records_count = fields.Integer(required=True)
    total_count = fields.Integer(required=True, allow_none=True,
                                 metadata={"description": "null with total_count: none"})
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)
    next_offset = fields.Integer(required=True, allow_none=True)
    next_cursor = fields.String(allow_none=True)
    status = fields.String(required=True, metadata={"example": "success"})


class RetrieveResponse(_Open):
    success = fields.Boolean(required=True, validate=validate.OneOf([True]))
    data_type = fields.String(required=True)
    result = fields.Nested(RetrieveResult, required=True)


class RejectedRecord(_Open):
    id = fields.Integer(required=True)
    stage = fields.String(required=True)
    record_index = fields.Integer(required=True)
    record = fields.Raw(required=True, metadata={"description": "the record as it came"})
    reasons = fields.List(fields.Dict(), required=True, metadata={
        "example": [{"rule": "required", "field": "campaign_id",
                     "message": "campaign_id is required"}]})


class RejectedPage(_Open):
    success = fields.Boolean(required=True, validate=validate.OneOf([True]))
    job_id = fields.UUID(required=True)
    records = fields.List(fields.Nested(RejectedRecord), required=True)
    records_count = fields.Integer(required=True)
    total_count = fields.Integer(required=True)
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)
    next_offset = fields.Integer(required=True, allow_none=True)


class Health(_Open):
    status = fields.String(required=True, metadata={"example": "ok"})


class Ready(_Open):
    status = fields.String(required=True, validate=validate.OneOf(["ready", "not ready"]))
    checks = fields.Dict(keys=fields.String(), values=fields.String(), required=True,
                         metadata={"example": {"database": "ok", "broker": "ok"}})


# ------------------------------------------------------------------------ shared components

ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("BadRequest", "bad_request", "malformed JSON: unexpected character: line 1 column 2"),
    401: ("Unauthorized", "unauthorized",
          "missing or invalid API key: send Authorization: Bearer <key> or X-API-Key"),
    404: ("NotFound", "not_found", f"no job {EXAMPLE_JOB_ID}"),
    409: ("Conflict", "conflict",
          "Idempotency-Key 'k1' was already used with a different request"),
    413: ("PayloadTooLarge", "payload_too_large",
          "2000000 records in one request; the limit is 1000000"),
    415: ("UnsupportedMediaType", "unsupported_media_type",
          "expected Content-Type: application/json, got text/plain"),
    422: ("InvalidRequest", "invalid_request", "unknown data type 'campaign_perf'"),
    503: ("ServiceUnavailable", "query_timeout",
          "the query ran past its time limit: narrow the filters or page with cursor"),
}
ERROR_MEANING = {
    400: "Malformed JSON.",
    401: "No API key, or a wrong one (only when the server sets API_KEYS).",
    404: "No such job.",
    409: "A conflict: the Idempotency-Key was already used with a different request body, "
         "or the quarantined records were already replayed.",
    413: "The body, or the number of records, is larger than the server's limit.",
    415: "A media type this operation does not take.",
    422: "Well-formed but invalid: unknown data type, source, field, filter or table name, "
         "or a value out of range.",
    503: "The query ran past its time limit (`query_timeout`), or the database could not be "
         "reached (`service_unavailable`, with Retry-After): retry shortly.",
}
API_SECURITY = [{"bearerAuth": []}, {"apiKeyHeader": []}]
JSON = "application/json"


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"$ref": f"#/components/responses/{ERRORS[s][0]}"} for s in statuses}


def _json(schema: str, example: Any = None) -> dict[str, Any]:
    content: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{schema}"}}
    if example is not None:
        content["example"] = example
    return {JSON: content}


def _accepted_example(kind: str) -> dict[str, Any]:
    example: dict[str, Any] = {
        "success": True, "job_id": EXAMPLE_JOB_ID, "status": "queued",
        "status_url": f"/api/v1/jobs/{EXAMPLE_JOB_ID}", "data_type": "campaign_performance",
        "result": {"records_count": 1, "status": "queued"},
    }
    if SEED_EXAMPLES[kind].get("source"):
        example["source"] = SEED_EXAMPLES[kind]["source"]
    return example


ACCEPTED_HEADERS = {
    "Location": {"description": "the job's status URL", "required": True,
                 "schema": {"type": "string"}},
    "Idempotent-Replayed": {"description": "\"true\" when an Idempotency-Key was replayed",
                            "schema": {"type": "string", "enum": ["true"]}},
}

# ------------------------------------------------------------------------------- operations

STAGE_SUMMARY = {
    "ingest": "Run the whole chain ingest → validate → process → store on a batch",
    "validate": "Validate a batch; invalid records are quarantined",
    "process": "Process a batch: types, dedup, derived metrics, enrichment",
    "store": "Store a batch in the data type's table (bulk upsert on its natural key)",
}
REQUEST_SCHEMA = {"ingest": "IngestRequest", "validate": "ValidateRequest",
                  "process": "ProcessRequest", "store": "StoreRequest"}


def _accept_operation(kind: str) -> dict[str, Any]:
    content: dict[str, Any] = {JSON: {
        "schema": {"$ref": f"#/components/schemas/{REQUEST_SCHEMA[kind]}"},
        "examples": {"seed": {"summary": "the seed's example", "value": SEED_EXAMPLES[kind]}},
    }}
    parameters: list[dict[str, Any]] = ["IdempotencyKey"]
    description = ("Answers 202 at once with a job id; poll `status_url` "
                   "(GET /api/v1/jobs/{job_id}) for the result.")
    if kind == "ingest":
        description += (
            "\n\nBesides JSON, a file body is taken and streamed without holding it in memory: "
            "CSV (`text/csv`) or NDJSON (`application/x-ndjson`, JSON Lines), with "
            "`?data_type=` (required) and `?source=`. Idempotency-Key applies to JSON bodies.")
        for media in FILE_FORMATS:
            example = ("campaign_id,spend,impressions,clicks,conversions\n123,100.0,1000,50,5\n"
                       if FILE_FORMATS[media] == "csv" else
                       '{"campaign_id": "123", "spend": 100.0, "impressions": 1000, '
                       '"clicks": 50, "conversions": 5}\n')
            content[media] = {"schema": {"type": "string"}, "example": example}
        parameters += [
            {"name": "data_type", "in": "query", "required": False,
             "description": "for a file body: the data type of its rows (required then)",
             "schema": {"type": "string", "minLength": 1, "example": "campaign_performance"}},
            {"name": "source", "in": "query", "required": False,
             "description": "for a file body: the platform its rows come from",
             "schema": {"type": "string", "minLength": 1, "example": "meta_ads"}},
        ]
    return {"post": {
        "tags": ["pipeline"],
        "summary": STAGE_SUMMARY[kind],
        "description": description,
        "operationId": kind,
        "security": API_SECURITY,
        "parameters": parameters,
        "requestBody": {"required": True, "content": content},
        "responses": {
            "202": {"description": "Accepted: the batch is durable and its job queued.",
                    "headers": ACCEPTED_HEADERS,
                    "content": _json("Accepted", _accepted_example(kind))},
            **_errors(400, 401, 409, 413, 415, 422, 503),
        },
    }}


def _retrieve_operation() -> dict[str, Any]:
    return {"post": {
        "tags": ["pipeline"],
        "summary": "Query stored records: filters, sort, fields, pages, aggregates",
        "description": "Synchronous. With `Accept: text/csv` the same query streams as CSV.",
        "operationId": "retrieve",
        "security": API_SECURITY,
        "requestBody": {"required": True, "content": {JSON: {
            "schema": {"$ref": "#/components/schemas/RetrieveRequest"},
            "examples": {"seed": {"summary": "the seed's example",
                                  "value": SEED_EXAMPLES["retrieve"]}},
        }}},
        "responses": {
            "200": {"description": "One page of records.", "content": {
                **_json("RetrieveResponse", {
                    "success": True, "data_type": "campaign_performance",
                    "result": {"retrieved_at": "2023-10-27T10:00:00Z", "records": [],
                               "records_count": 0, "total_count": 0, "limit": 100,
                               "offset": 0, "next_offset": None, "next_cursor": None,
                               "status": "success"}}),
                "text/csv": {"schema": {"type": "string"}},
            }},
            **_errors(400, 401, 413, 415, 422, 503),
        },
    }}


JOB_ID_PARAMETER = "JobId"  # a registered component: apispec makes it a $ref


def _job_operation() -> dict[str, Any]:
    return {"get": {
        "tags": ["jobs"],
        "summary": "A job: status, stages with counts and results, progress",
        "operationId": "getJob",
        "security": API_SECURITY,
        "parameters": [JOB_ID_PARAMETER, {
            "name": "wait", "in": "query", "required": False,
            "description": "hold the request until the job finishes or this many seconds "
                           "pass (long poll); when the API process already holds its "
                           "maximum of long polls, the job is answered at once with "
                           "Retry-After: 1",
            "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS,
                       "default": 0},
        }],
        "responses": {
            "200": {"description": "The job.", "content": _json("Job", {
                "success": True, "job_id": EXAMPLE_JOB_ID, "kind": "pipeline",
                "status": "running", "data_type": "campaign_performance", "source": "meta_ads",
                "records_count": 1, "stages": [
                    {"name": "ingest", "status": "succeeded", "records_in": 1,
                     "records_out": 1, "started_at": "2023-10-27T10:00:00Z",
                     "finished_at": "2023-10-27T10:00:00.100Z",
                     "result": {"ingested_at": "2023-10-27T10:00:00.100Z",
                                "records_count": 1, "status": "success"}},
                    {"name": "validate", "status": "running", "records_in": None,
                     "records_out": None, "started_at": "2023-10-27T10:00:00.200Z",
                     "finished_at": None, "result": None}],
                "result": None, "error": None, "created_at": "2023-10-27T10:00:00Z",
                "started_at": "2023-10-27T10:00:00Z", "finished_at": None,
                "progress": {"stage": "validate", "records_done": 0, "records_total": 1},
            })},
            **_errors(401, 404, 422, 503),
        },
    }}


def _rejected_operation() -> dict[str, Any]:
    def page_parameter(name: str, default: int, minimum: int, maximum: int) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False,
                "schema": {"type": "integer", "minimum": minimum, "maximum": maximum,
                           "default": default}}

    return {"get": {
        "tags": ["jobs"],
        "summary": "A job's quarantined records with their reasons, oldest first",
        "operationId": "getRejected",
        "security": API_SECURITY,
        "parameters": [JOB_ID_PARAMETER, page_parameter("limit", 100, 1, MAX_PAGE),
                       page_parameter("offset", 0, 0, 2**31)],
        "responses": {
            "200": {"description": "One page of quarantined records.",
                    "content": _json("RejectedPage")},
            **_errors(401, 404, 422, 503),
        },
    }}


def _replay_operation() -> dict[str, Any]:
    return {"post": {
        "tags": ["jobs"],
        "summary": "Send corrected versions of a job's quarantined records through the pipeline",
        "description": "A new job (202) runs the job's stages on `records`; the quarantined "
                       "records are marked as replayed by it. 409 when they already were.",
        "operationId": "replayRejected",
        "security": API_SECURITY,
        "parameters": [JOB_ID_PARAMETER],
        "requestBody": {"required": True, "content": {JSON: {
            "schema": {"$ref": "#/components/schemas/ReplayRequest"},
            "example": {"records": [SEED_RECORD]}}}},
        "responses": {
            "202": {"description": "Accepted: the replay's job is queued.",
                    "headers": {"Location": ACCEPTED_HEADERS["Location"]},
                    "content": _json("ReplayAccepted")},
            **_errors(400, 401, 404, 409, 413, 415, 422, 503),
        },
    }}


def _plain_get(summary: str, tag: str, responses: dict[str, Any],
               operation_id: str) -> dict[str, Any]:
    return {"get": {"tags": [tag], "summary": summary, "operationId": operation_id,
                    "security": [], "responses": responses}}


OPERATIONS: dict[str, Callable[[], dict[str, Any]]] = {
    "data_pipeline.ingest": lambda: _accept_operation("ingest"),
    "data_pipeline.validate": lambda: _accept_operation("validate"),
    "data_pipeline.process": lambda: _accept_operation("process"),
    "data_pipeline.store": lambda: _accept_operation("store"),
    "retrieve.retrieve_records": _retrieve_operation,
    "jobs.get_job": _job_operation,
    "jobs.rejected": _rejected_operation,
    "jobs.replay_rejected": _replay_operation,
    "health.healthz": lambda: _plain_get(
        "Liveness: the process is up", "operations",
        {"200": {"description": "Up.", "content": _json("Health", {"status": "ok"})}},
        "healthz"),
    "health.readyz": lambda: _plain_get(
        "Readiness: database and broker reachable", "operations",
        {"200": {"description": "Ready.", "content": _json("Ready")},
         "503": {"description": "Not ready; `checks` says which.",
                 "content": _json("Ready", {"status": "not ready", "checks": {
                     "database": "ok", "broker": "unreachable: OperationalError"}})}},
        "readyz"),
    "metrics.metrics": lambda: _plain_get(
        "Prometheus metrics", "operations",
        {"200": {"description": "Prometheus text format.",
                 "content": {"text/plain": {"schema": {"type": "string"}}}}},
        "metrics"),
    "openapi.openapi_json": lambda: _plain_get(
        "This document", "operations",
        {"200": {"description": "OpenAPI 3.", "content": {JSON: {"schema": {
            "type": "object"}}}}},
        "openapi"),
    "openapi.docs": lambda: _plain_get(
        "Interactive documentation (Swagger UI)", "operations",
        {"200": {"description": "An HTML page.",
                 "content": {"text/html": {"schema": {"type": "string"}}}}},
        "docs"),
}

# ------------------------------------------------------------------------------ the document


def openapi_path(rule: Rule) -> str:
    """/api/v1/jobs/<job_id> -> /api/v1/jobs/{job_id}; converters such as <int:n> dropped."""
    return _VARIABLE.sub(r"{\1}", rule.rule)


def _components(spec: APISpec) -> None:
    for name in ("IngestRequest", "ValidateRequest", "ProcessRequest", "StoreRequest",
                 "RetrieveRequest", "ReplayRequest"):
        spec.components.schema(name, schema=getattr(schemas, name))
    for schema in (ErrorDetail, Error, Accepted, ReplayAccepted, Job, RetrieveResponse,
                   RejectedPage, Health, Ready):
        spec.components.schema(schema.__name__, schema=schema)
    for status, (name, code, message) in ERRORS.items():
        spec.components.response(name, {
            "description": ERROR_MEANING[status],
            "content": _json("Error", {"success": False, "error": {
                "code": code, "message": message, "details": None}}),
        })
    spec.components.security_scheme("bearerAuth", {
        "type": "http", "scheme": "bearer",
        "description": "Authorization: Bearer <key>, one of API_KEYS (when the server sets it)"})
    spec.components.security_scheme("apiKeyHeader", {
        "type": "apiKey", "in": "header", "name": "X-API-Key",
        "description": "X-API-Key: <key>, one of API_KEYS (when the server sets it)"})
    spec.components.parameter("IdempotencyKey", "header", {
        "name": "Idempotency-Key", "required": False,
        "description": "Send the same key again with the same body to get the same job back "
                       "(202, Idempotent-Replayed: true) instead of a second job; the same key "
                       "with another body is 409. Printable text, without control "
                       "characters (422 otherwise).",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY}})
    spec.components.parameter("JobId", "path", {
        "name": "job_id", "description": "the job id returned by a 202",
        "schema": {"type": "string", "format": "uuid"}})


def _data_is_object_or_array(document: dict[str, Any]) -> None:
    """`data` is a fields.Raw checked by a schema validator: say what it takes."""
    for name in REQUEST_SCHEMA.values():
        data = document["components"]["schemas"][name]["properties"]["data"]
        data["anyOf"] = [{"type": "object", "example": {"records": [SEED_RECORD]}},
                         {"type": "array", "items": {}}]


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of `app`: every route whose endpoint has an entry in OPERATIONS."""
    spec = APISpec(
        title="Marketing data pipeline",
        version=API_VERSION,
        openapi_version=OPENAPI_VERSION,
        plugins=[MarshmallowPlugin()],
        info={"description": (
            "Push ad-platform, CRM and web-analytics batches in (202 + job id), poll the job, "
            "query the stored records back.\n\nEvery error has one shape: "
            "`{\"success\": false, \"error\": {\"code\", \"message\", \"details\"}}`. "
            "When the server sets API_KEYS, every /api/ call needs `Authorization: Bearer "
            "<key>` or `X-API-Key: <key>`.")},
        tags=[{"name": "pipeline", "description": "accept batches and query records"},
              {"name": "jobs", "description": "jobs and their quarantined records"},
              {"name": "operations", "description": "health, metrics and this document"}],
    )
    _components(spec)
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        build = OPERATIONS.get(rule.endpoint)
        if build is not None:
            spec.path(path=openapi_path(rule), operations=build())
    document = spec.to_dict()
    _data_is_object_or_array(document)
    return document


def document_for(app: Flask) -> dict[str, Any]:
    """Built once per app (the url_map does not change after start)."""
    cached = app.extensions.get("openapi_document")
    if cached is None:
        cached = app.extensions["openapi_document"] = build_document(app)
    return copy.deepcopy(cached)


DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Marketing data pipeline API</title>
  <link rel="stylesheet" href="{cdn}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{cdn}/swagger-ui-bundle.js" crossorigin></script>
  <script>
    window.ui = SwaggerUIBundle({{url: "{url}", dom_id: "#swagger-ui", deepLinking: true}});
  </script>
</body>
</html>
"""


@bp.get("/openapi.json")
def openapi_json():  # type: ignore[no-untyped-def]
    """The OpenAPI 3 document."""
    return document_for(current_app._get_current_object())  # type: ignore[attr-defined]


@bp.get("/docs")
def docs():  # type: ignore[no-untyped-def]
    """Swagger UI, loaded from a CDN by the reader's browser, on /openapi.json."""
    page = DOCS_PAGE.format(cdn=SWAGGER_UI, url="openapi.json")
    return page, 200, {"Content-Type": "text/html; charset=utf-8"}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
