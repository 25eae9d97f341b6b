"""One error shape for every failure.

    {"success": false, "error": {"code": ..., "message": ..., "details": ...}}
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from flask import Flask, jsonify
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

from tasks import jsontext

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
    415: "unsupported_media_type", 422: "invalid_request", 429: "too_many_requests",
    500: "internal_error", 503: "service_unavailable",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None,
                 details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _HTTP_CODES.get(status, "error")
        self.message = message
        self.details = details


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"success": False, "error": {"code": code, "message": message, "details": details}}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):  # type: ignore[no-untyped-def]
        return jsonify(error_body(exc.code, exc.message, exc.details)), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            message = (f"request body is larger than the limit of "
                       f"{app.config['MAX_CONTENT_LENGTH']} bytes")
        response = jsonify(error_body(_HTTP_CODES.get(status, "error"), message))
        if status == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response, status

    @app.errorhandler(orjson.JSONEncodeError)
    def _unstorable(exc: orjson.JSONEncodeError):  # type: ignore[no-untyped-def]
        # Raised where the request's data is written as JSON (the raw batch, the request's
        # hash): what orjson parsed it cannot write, i.e. nesting past its 254 levels.
        # (Responses fall back to the standard library: see webapp/jsonio.py.) orjson's
        # error is TypeError itself: any other TypeError is a bug, answered as one.
        if jsontext.NESTING_REFUSED not in str(exc):
            return _unexpected(exc)
        message = (f"the request's data cannot be stored as JSON ({exc}): objects and lists "
                   f"may nest about 250 levels deep at most")
        return jsonify(error_body("invalid_request", message)), 422

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    def _database_error(exc: DBAPIError):  # type: ignore[no-untyped-def]
        if not lost_connection(exc):  # a timeout, a full disk, a bug: not for a retry
            return _unexpected(exc)
        # A restart or a dropped connection: passing (an Idempotency-Key makes the retry
        # of a POST safe).
        log.warning("database connection lost: %s", exc)
        response = jsonify(error_body(
            "service_unavailable", "the database is unavailable; retry in a moment"))
        return response, 503, {"Retry-After": "1"}

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        log.exception("unhandled error")
        return jsonify(error_body("internal_error", "internal server error")), 500


# SQLSTATEs of a server going away: connection exceptions, and the three shutdowns.
_CONNECTION_LOST = ("08", "57P01", "57P02", "57P03")


def lost_connection(exc: DBAPIError) -> bool:
    """True for an error that means the connection or the server went away: a retry on a
    new connection can succeed. psycopg2 reports a dropped socket with no SQLSTATE."""
    if exc.connection_invalidated:
        return True
    code = getattr(exc.orig, "pgcode", None)
    return code is None or code.startswith(_CONNECTION_LOST)
