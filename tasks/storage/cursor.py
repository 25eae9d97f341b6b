"""Opaque, signed retrieval cursors.

A cursor is base64url(JSON payload) + "." + base64url(HMAC-SHA256 of the payload). The key
is generated once per database and kept in `pipeline_secrets`, so every API process of a
deployment accepts the cursors of the others with no configuration, across restarts.
A cursor that was altered, truncated or made for another query is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine

from tasks import jsontext
from tasks.storage.schema import secrets_table

KEY_NAME = "retrieve_cursor_key"
# A cursor carries the last row's sort values, and a text column such as a name may be
# long: the bound keeps input finite, and covers any cursor we make from a stored row.
# (Nothing is decoded before the signature has been checked.)
MAX_CURSOR_CHARS = 1 << 20
_SIGNATURE_BYTES = 20

_keys: dict[str, bytes] = {}
_lock = threading.Lock()


class CursorError(ValueError):
    """A cursor that is not one of ours, or not for this query."""


def signing_key(engine: Engine) -> bytes:
    """This database's cursor key: created on first use (race-safe), then cached."""
    cache_key = engine.url.render_as_string(hide_password=True)
    key = _keys.get(cache_key)
    if key is not None:
        return key
    with _lock, engine.begin() as conn:
        conn.execute(insert(secrets_table).values(name=KEY_NAME, value=secrets.token_hex(32))
                     .on_conflict_do_nothing(index_elements=["name"]))
        value = conn.execute(
            select(secrets_table.c.value).where(secrets_table.c.name == KEY_NAME)
        ).scalar_one()
    key = bytes.fromhex(value)
    _keys[cache_key] = key
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def query_digest(parts: Mapping[str, Any]) -> str:
    """A short fingerprint of what a cursor belongs to (data type, filters, sort, ...)."""
    body = jsontext.dumps(parts, default=str, sort_keys=True)
    return hashlib.sha256(body).hexdigest()[:32]


def encode(key: bytes, payload: Mapping[str, Any]) -> str:
    body = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    signature = hmac.new(key, body, hashlib.sha256).digest()[:_SIGNATURE_BYTES]
    return f"{_b64(body)}.{_b64(signature)}"


def decode(key: bytes, token: str) -> dict[str, Any]:
    """The payload of a cursor we signed; CursorError for anything else."""
    if not isinstance(token, str) or len(token) > MAX_CURSOR_CHARS or token.count(".") != 1:
        raise CursorError("malformed cursor")
    body_text, signature_text = token.split(".")
    try:
        body, signature = _unb64(body_text), _unb64(signature_text)
    except (binascii.Error, ValueError):
        raise CursorError("malformed cursor") from None
    # One spelling per cursor: base64's last character has bits the decoder ignores.
    if _b64(body) != body_text or _b64(signature) != signature_text:
        raise CursorError("malformed cursor")
    expected = hmac.new(key, body, hashlib.sha256).digest()[:_SIGNATURE_BYTES]
    if not hmac.compare_digest(signature, expected):
        raise CursorError("cursor signature does not match (altered or not ours)")
    payload = orjson.loads(body)
    if not isinstance(payload, dict):
        raise CursorError("malformed cursor")
    return payload
