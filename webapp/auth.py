"""API keys: `Authorization: Bearer <key>` or `X-API-Key: <key>`, compared in constant time."""

from __future__ import annotations

import hmac

from flask import current_app, request

from webapp.errors import ApiError


def _presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.headers.get("X-API-Key")


def require_api_key() -> None:
    """before_request hook of the /api blueprints; a no-op when API_KEYS is not set."""
    keys: tuple[str, ...] = current_app.config["API_KEYS"]
    if not keys:
        return
    presented = (_presented_key() or "").encode()
    # Compare against every key so the time taken does not depend on which one matched.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(presented, key.encode())
    if not matched:
        raise ApiError(401, "missing or invalid API key: send Authorization: Bearer <key> "
                            "or X-API-Key", details=None)
