"""Records as JSON text and back: orjson's speed, the standard library's exact integers.

orjson reads an integer wider than 64 bits as a float, silently (a CRM id of 27 digits
came back with its last eleven zeroed), and refuses to write one. The standard library
does both exactly, several times slower. Such an integer is spelled with 19 digits or
more in a row, which a C-speed scan of the text finds for a tenth of orjson's parse: only
text that has such a run (a long fraction or a long string of digits has too) is read by
the standard library, and only what orjson refuses is written by it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import date, datetime, time
from typing import Any
from uuid import UUID

import orjson

from tasks.coerce import json_default

# What the caller catches for malformed text, whichever reader found it (orjson's error
# is a subclass).
DecodeError = json.JSONDecodeError

# Every ASCII digit to "0", every other byte to a space: a wide integer is then 19 zeros
# in a row, whatever surrounds it.
_DIGITS_ONLY = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_WIDE = b"0" * 19


def may_hold_wide_integer(text: bytes | str) -> bool:
    """True when `text` has 19 digits in a row: maybe an integer orjson cannot keep."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return _WIDE in raw.translate(_DIGITS_ONLY)


def loads(text: bytes | str) -> Any:
    """JSON text as Python values, integers exact; raises DecodeError on malformed text.
    What orjson refuses is refused (NaN, 1e999, a lone surrogate, a byte-order mark)."""
    value = orjson.loads(text)
    if not may_hold_wide_integer(text):
        return value
    # Read again, exactly: orjson has checked the text (the slow path is rare).
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # e.g. past Python's 4,300 digits
        raise DecodeError(f"not valid JSON: {exc}", "", 0) from None


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities as None, as orjson writes them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _native(default: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """`default` for the standard library, with the types orjson writes by itself, as it
    writes them."""

    def convert(value: Any) -> Any:
        if isinstance(value, datetime | date | time):
            return value.isoformat()
        if isinstance(value, UUID):
            return str(value)
        if default is None:
            raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")
        return _finite(default(value))  # a Decimal infinity made a float, say

    return convert


# How orjson says it met an integer wider than 64 bits, and nesting too deep (checked by
# tests/test_wide_integers and tests/test_api_errors).
_WIDE_INTEGER_REFUSED = "64-bit"
NESTING_REFUSED = "Recursion limit"
# Lists and objects orjson writes nested at most (it refuses deeper ones).
ORJSON_MAX_DEPTH = 254


def _deeper_than(value: Any, limit: int) -> bool:
    """True when lists and dicts nest in `value` more than `limit` levels."""
    level: list[Any] = [value]
    for _ in range(limit + 1):
        level = [inner for item in level if isinstance(item, list | tuple | dict)
                 for inner in (item.values() if isinstance(item, dict) else item)]
        if not level:
            return False
    return True


def dumps(value: Any, default: Callable[[Any], Any] | None = json_default, *,
          sort_keys: bool = False, non_str_keys: bool = False,
          any_depth: bool = False) -> bytes:
    """`value` as compact UTF-8 JSON text (Decimals as their exact strings by default).

    Nesting past orjson's 254 levels is refused, the limit the API states for the data it
    takes (webapp/errors.py), unless `any_depth` (what is written back: a response, a
    job row). `non_str_keys`: keys that are not strings are written as strings."""
    option = (orjson.OPT_SORT_KEYS if sort_keys else 0) | \
        (orjson.OPT_NON_STR_KEYS if non_str_keys else 0)
    try:
        return orjson.dumps(value, default=default, option=option or None)
    except orjson.JSONEncodeError as refused:
        if not any_depth:
            if _WIDE_INTEGER_REFUSED not in str(refused):
                raise
            if _deeper_than(value, ORJSON_MAX_DEPTH):
                raise orjson.JSONEncodeError(f"{NESTING_REFUSED} reached") from None
        try:
            return json.dumps(_finite(value), default=_native(default), ensure_ascii=False,
                              separators=(",", ":"), allow_nan=False,
                              sort_keys=sort_keys).encode()
        except (TypeError, ValueError, RecursionError):
            raise refused from None


def plain(value: Any) -> Any:
    """`value` in JSON's own types, as it reads back from its JSON text."""
    return loads(dumps(value))
