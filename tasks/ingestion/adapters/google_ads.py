"""Google Ads (GAQL over REST) rows -> canonical ad records.

Accepted: `{"records": [...]}`, a searchStream response (a JSON array of batches
`[{"results": [...], "fieldMask": ..., "requestId": ...}, ...]`) or one search response
`{"results": [...], "nextPageToken": ...}`.

A row is nested by resource: `{"customer": {"id", "currencyCode"}, "campaign": {"id",
"name"}, "segments": {"date"}, "metrics": {"impressions", "clicks", "costMicros",
"conversions", "conversionsValue"}}`. REST JSON keys are lowerCamelCase; the snake_case
GAQL spellings (`metrics.cost_micros`, as in CSV exports with dotted headers unflattened)
map the same way. int64 values come as strings, doubles as numbers.

Money is in micros: spend = cost_micros / 1,000,000, exactly, as a Decimal. Fields not
mapped keep their dotted GAQL path as name (`campaign.status`, `metrics.ctr`,
`metrics.averageCpc` in micros; an unmapped object such as `campaign.networkSettings` is
kept whole) and land in `extra`; Google's own ratios are therefore never taken for the
canonical ctr/cpc. Without `customer.id`, the account is read from a resource name
(`customers/{id}/campaigns/{id}`). Other resources (`geographicView`, ...) are kept whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from tasks.coerce import in_decimal_range
from tasks.ingestion.adapters.base import ChainedRows, PlatformAdapter

_CAMEL_PATHS = {
    "customer.id": "account_id",
    "customer.currencyCode": "currency",
    "campaign.id": "campaign_id",
    "campaign.name": "campaign_name",
    "adGroup.id": "adset_id",
    "adGroup.name": "adset_name",
    "adGroupAd.ad.id": "ad_id",
    "adGroupAd.ad.name": "ad_name",
    "segments.date": "date",
    "metrics.impressions": "impressions",
    "metrics.clicks": "clicks",
    "metrics.conversions": "conversions",
    "metrics.conversionsValue": "conversion_value",
}
# Breakdowns of the audience data type (device/network segments, age and gender views).
_CAMEL_AUDIENCE_PATHS = {
    **_CAMEL_PATHS,
    "segments.device": "device",
    "segments.adNetworkType": "platform",
    "adGroupCriterion.ageRange.type": "age",
    "adGroupCriterion.gender.type": "gender",
}
_CAMEL_MICROS_PATHS = {"metrics.costMicros": "spend"}


def _snake(path: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", path).lower()


def _both_spellings(paths: dict[str, str]) -> dict[str, str]:
    return {**paths, **{_snake(path): target for path, target in paths.items()}}


_PATHS = _both_spellings(_CAMEL_PATHS)
_AUDIENCE_PATHS = _both_spellings(_CAMEL_AUDIENCE_PATHS)
_MICROS_PATHS = _both_spellings(_CAMEL_MICROS_PATHS)
# Top-level resources that are unpacked; any other nested object is kept whole.
_RESOURCES = frozenset(path.split(".", 1)[0] for path in (*_AUDIENCE_PATHS, *_MICROS_PATHS))
# A row with none of these names (nested resources or flat dotted paths) is canonical.
_NATIVE_KEYS = frozenset({*_RESOURCES, *_AUDIENCE_PATHS, *_MICROS_PATHS})
_RESOURCE_NAMES = ("resourceName", "resource_name")


class _Micros(str):
    """A tree leaf whose value is in micros: the canonical name, converted on the way."""


def _tree(paths: Mapping[str, str]) -> dict[str, Any]:
    """Paths as nested dicts, so a nested row is walked without building path strings."""
    root: dict[str, Any] = {}
    leaves = {**paths, **{path: _Micros(target) for path, target in _MICROS_PATHS.items()}}
    for path, target in leaves.items():
        node = root
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = target
    return root


_TREE = _tree(_PATHS)
_AUDIENCE_TREE = _tree(_AUDIENCE_PATHS)


class GoogleAdsAdapter(PlatformAdapter):
    name = "google_ads"
    data_types = frozenset({"campaign_performance", "ad_performance", "audience"})
    native_shape = ('a searchStream response [{"results": [...]}, ...] or a search '
                    'response {"results": [...]}')
    native_keys = _NATIVE_KEYS

    def native_rows(self, data: Any) -> Iterable[Any] | None:
        if isinstance(data, list):
            batches: list[list[Any]] = []
            for batch in data:
                if not isinstance(batch, Mapping):
                    return None
                results = batch.get("results")
                if isinstance(results, list):
                    batches.append(results)
                elif results is not None:
                    return None
                # A batch without results (the last one, with the summary) adds no rows.
            return ChainedRows(batches)
        if isinstance(data, Mapping):
            results = data.get("results")
            if isinstance(results, list):
                return results
            if results is None and ("fieldMask" in data or "requestId" in data):
                return []  # a search page with no rows omits `results`
        return None

    def from_native(
        self, row: Mapping[str, Any], data_type: str, options: Mapping[str, Any]
    ) -> dict[str, Any]:
        audience = data_type == "audience"
        tree = _AUDIENCE_TREE if audience else _TREE
        paths = _AUDIENCE_PATHS if audience else _PATHS
        out = {}
        for key, value in row.items():
            node = tree.get(key)
            if node is not None and isinstance(value, dict | Mapping):
                _unpack(value, key + ".", node, out)
            else:
                # Flat dotted names (`metrics.cost_micros`) map like nested ones.
                target = paths.get(key)
                if target is not None:
                    out[target] = value
                elif key in _MICROS_PATHS:
                    out[_MICROS_PATHS[key]] = micros_to_money(value, key)
                else:
                    out[key] = value
        if out.get("account_id") is None:
            account = _account_from_resource_names(out)
            if account is not None:
                out["account_id"] = account
        return out


def _unpack(obj: Mapping[str, Any], prefix: str, node: Mapping[str, Any],
            out: dict[str, Any]) -> None:
    """Mapped leaves under their canonical names; anything else under its dotted path."""
    for key, value in obj.items():
        entry = node.get(key)
        if entry is None:
            out[prefix + key] = value
        elif type(entry) is str:
            out[entry] = value
        elif isinstance(entry, _Micros):
            out[str(entry)] = micros_to_money(value, prefix + key)
        elif isinstance(value, dict | Mapping):
            _unpack(value, prefix + key + ".", entry, out)
        else:
            out[prefix + key] = value


def micros_to_money(value: Any, field: str = "cost_micros") -> Decimal | None:
    """Micros as an exact Decimal amount: 130319306 -> Decimal("130.319306")."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str | float | Decimal):
        raise TypeError(f"{field} must be a number of micros, got {type(value).__name__}")
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
    try:
        micros = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{field} must be a number of micros, got {value!r}") from None
    if not micros.is_finite():
        raise ValueError(f"{field} must be a finite number of micros, got {value!r}")
    if not in_decimal_range(micros):  # scaleb itself would overflow far enough out
        raise ValueError(f"{field} out of range: {str(value)[:40]!r}")
    return micros.scaleb(-6)


def _account_from_resource_names(out: Mapping[str, Any]) -> str | None:
    for key, value in out.items():
        if key.endswith(_RESOURCE_NAMES) and isinstance(value, str):
            parts = value.split("/", 2)
            if len(parts) > 1 and parts[0] == "customers" and parts[1]:
                return parts[1]
    return None
