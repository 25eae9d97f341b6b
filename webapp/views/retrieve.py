"""POST /api/v1/data_pipeline/retrieve: synchronous queries of stored records.

JSON by default; with `Accept: text/csv` the same query streams as CSV (no limit given
means every matching row). Queries run in a read-only transaction with a time limit.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from typing import Any

from flask import Blueprint, Response, request
from psycopg2 import errors as pg_errors
from sqlalchemy.exc import OperationalError

from tasks.datatypes import DATA_TYPES, DataType, UnknownDataType, get_data_type
from tasks.stage import utc_timestamp
from tasks.storage import db
from tasks.storage.retrieve import RetrievalError, read_only, retrieve, stream
from webapp.auth import require_api_key
from webapp.csv_cells import csv_cell
from webapp.errors import ApiError
from webapp.jsonio import load_body
from webapp.schemas import RetrieveRequest

bp = Blueprint("retrieve", __name__, url_prefix="/api/v1/data_pipeline")
bp.before_request(require_api_key)

CSV_MIMETYPE = "text/csv"
CSV_FLUSH_ROWS = 500


@bp.post("/retrieve")
def retrieve_records():  # type: ignore[no-untyped-def]
    """Query stored records: filters, sort, fields, pages (offset or cursor), aggregates."""
    body = load_body(RetrieveRequest())
    try:
        data_type = get_data_type(body["data_type"])
    except UnknownDataType as exc:
        raise ApiError(422, str(exc), details={"field": "data_type",
                                               "allowed": sorted(DATA_TYPES)}) from None
    query = {
        "filters": body["filters"], "sort": body["sort"], "fields": body["fields"],
        "offset": body["offset"], "cursor_token": body["cursor"],
        "group_by": body["group_by"], "metrics": body["metrics"],
    }
    if request.accept_mimetypes.best_match(["application/json", CSV_MIMETYPE]) == CSV_MIMETYPE:
        return _csv_response(data_type, query, body["limit"])
    try:
        with read_only(db.get_engine()) as conn:
            page = retrieve(conn, data_type, limit=body["limit"],
                            total_count=body["total_count"], **query)
    except RetrievalError as exc:
        raise ApiError(422, str(exc), details=exc.details) from None
    except OperationalError as exc:
        raise _timeout_or(exc) from None
    return {
        "success": True,
        "data_type": data_type.name,
        "result": {"retrieved_at": utc_timestamp(), **page, "status": "success"},
    }


def _timeout_or(exc: OperationalError) -> Exception:
    if isinstance(exc.orig, pg_errors.QueryCanceled):
        return ApiError(503, "the query ran past its time limit: narrow the filters "
                             "(account, campaign, date_range) or page with cursor",
                        code="query_timeout")
    return exc


def _csv_response(data_type: DataType, query: dict[str, Any], limit: int | None) -> Response:
    resources = ExitStack()  # the connection lives as long as the stream
    try:
        conn = resources.enter_context(read_only(db.get_engine()))
        names, rows = stream(conn, data_type, limit=limit, **query)
    except RetrievalError as exc:
        resources.close()
        raise ApiError(422, str(exc), details=exc.details) from None
    except BaseException:
        resources.close()
        raise
    response = Response(_csv_lines(names, rows), mimetype=CSV_MIMETYPE)
    response.headers["Content-Disposition"] = f'attachment; filename="{data_type.name}.csv"'
    response.call_on_close(resources.close)
    return response


def _csv_lines(names: Sequence[str], rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    for count, row in enumerate(rows, 1):
        writer.writerow([csv_cell(row[name]) for name in names])
        if count % CSV_FLUSH_ROWS == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
