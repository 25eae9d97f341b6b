"""JSON in and out with orjson: strict parsing of request bodies, Decimals as numbers."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from flask import request
from flask.json.provider import JSONProvider
from marshmallow import Schema, ValidationError

from tasks import jsontext
from webapp.errors import ApiError


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        # NUMERIC columns (money, ratios) are JSON numbers: 2 -> 2.0, 0.05 -> 0.05.
        return float(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


class OrjsonProvider(JSONProvider):
    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return dumps(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return jsontext.loads(s)


def dumps(obj: Any) -> bytes:
    # A jsonb value read back can be more than orjson writes: an integer wider than 64
    # bits (jsonb keeps 1e20 as 100000000000000000000), or nesting past 254 levels once
    # wrapped in the response. jsontext's fallback writes both.
    return jsontext.dumps(obj, default=_default, non_str_keys=True, any_depth=True)


def json_body() -> Any:
    """The request's JSON body; 415 for another media type, 400 for malformed JSON."""
    if not request.mimetype or request.mimetype != "application/json" \
            and not request.mimetype.endswith("+json"):
        raise ApiError(415, f"expected Content-Type: application/json, got "
                            f"{request.mimetype or 'none'}")
    raw = request.get_data(cache=False)
    try:
        return jsontext.loads(raw)  # integers wider than 64 bits kept exact
    except jsontext.DecodeError as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None


def load_body(schema: Schema) -> dict[str, Any]:
    body = json_body()
    if not isinstance(body, Mapping):
        raise ApiError(422, "request body must be a JSON object")
    try:
        return schema.load(body)
    except ValidationError as exc:
        fields = sorted(exc.messages) if isinstance(exc.messages, dict) else []
        raise ApiError(422, f"invalid request: {', '.join(fields) or 'body'}",
                       details=exc.messages) from None
