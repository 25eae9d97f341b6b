"""POST /api/v1/data_pipeline/retrieve: synchronous queries of stored records."""

from __future__ import annotations

from flask import Blueprint

from tasks.datatypes import DATA_TYPES, UnknownDataType, get_data_type
from tasks.stage import utc_timestamp
from tasks.storage import db
from tasks.storage.retrieve import RetrievalError, retrieve
from webapp.auth import require_api_key
from webapp.errors import ApiError
from webapp.jsonio import load_body
from webapp.schemas import RetrieveRequest

bp = Blueprint("retrieve", __name__, url_prefix="/api/v1/data_pipeline")
bp.before_request(require_api_key)


@bp.post("/retrieve")
def retrieve_records():  # type: ignore[no-untyped-def]
    """Query stored records with filters, sort, projection and pagination."""
    body = load_body(RetrieveRequest())
    try:
        data_type = get_data_type(body["data_type"])
    except UnknownDataType as exc:
        raise ApiError(422, str(exc), details={"field": "data_type",
                                               "allowed": sorted(DATA_TYPES)}) from None
    try:
        with db.get_engine().connect() as conn:
            page = retrieve(
                conn, data_type, filters=body["filters"], sort=body["sort"],
                fields=body["fields"], limit=body["limit"], offset=body["offset"],
            )
    except RetrievalError as exc:
        raise ApiError(422, str(exc), details=exc.details) from None
    return {
        "success": True,
        "data_type": data_type.name,
        "result": {"retrieved_at": utc_timestamp(), **page, "status": "success"},
    }
