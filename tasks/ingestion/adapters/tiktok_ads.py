"""TikTok Ads reporting rows -> canonical ad records.

Accepted: `{"records": [...]}` or the report/integrated/get response
`{"code": 0, "message": "OK", "data": {"page_info": {...}, "list": [...]}}`.

A row is `{"dimensions": {"stat_time_day", "campaign_id", "adgroup_id", "ad_id",
"advertiser_id", ...}, "metrics": {"spend", "impressions", "clicks", "conversion",
"campaign_name", ...}}`; a flat row with the same names (an export) maps the same way.
Every metric is a string and a missing one is `"-"`, which becomes None. `stat_time_day`
is "2025-11-12 00:00:00"; coercion takes its date.

conversions is `conversion` (results of the ad group's optimisation goal); conversion_value
is `total_complete_payment_rate`, which despite its name is the total value of complete
payments (purchases). TikTok's ctr and conversion_rate are percentages: they, cpc, cpm and
frequency are kept as `platform_<name>`, never taken for the canonical ratios.

Audience reports: `country_code` -> country, `placement` (PLACEMENT_TIKTOK, ...) ->
platform, and in native rows the `platform` dimension (the operating system: ANDROID,
IPHONE, PC) -> device. In a flat row `platform` is read as the canonical column.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tasks.ingestion.adapters.base import PayloadShapeError, PlatformAdapter

MISSING = "-"

_RENAMES = {
    "advertiser_id": "account_id",
    "adgroup_id": "adset_id",
    "adgroup_name": "adset_name",
    "stat_time_day": "date",
    "conversion": "conversions",
    "total_complete_payment_rate": "conversion_value",
    "ctr": "platform_ctr",
    "cpc": "platform_cpc",
    "cpm": "platform_cpm",
    "frequency": "platform_frequency",
    "conversion_rate": "platform_conversion_rate",
}
_AUDIENCE_RENAMES = {**_RENAMES, "country_code": "country", "placement": "platform"}
# Only in native (nested) rows is `platform` surely TikTok's operating-system dimension.
_NESTED_AUDIENCE_RENAMES = {**_AUDIENCE_RENAMES, "platform": "device"}
_NESTED = ("dimensions", "metrics")
_NATIVE_KEYS = frozenset({*_AUDIENCE_RENAMES, *_NESTED})


class TikTokAdsAdapter(PlatformAdapter):
    name = "tiktok_ads"
    data_types = frozenset({"campaign_performance", "ad_performance", "audience"})
    native_shape = 'the report response {"code": 0, "data": {"list": [...]}}'
    native_keys = _NATIVE_KEYS

    def native_rows(self, data: Any) -> Iterable[Any] | None:
        if not isinstance(data, Mapping) or "code" not in data or "data" not in data:
            return None
        if data["code"] != 0:
            raise PayloadShapeError(f"tiktok_ads: the response is an error: code "
                                    f"{data['code']}: {data.get('message')}")
        body = data["data"]
        rows = body.get("list") if isinstance(body, Mapping) else None
        return rows if isinstance(rows, list) else None

    def from_native(
        self, row: Mapping[str, Any], data_type: str, options: Mapping[str, Any]
    ) -> dict[str, Any]:
        audience = data_type == "audience"
        names = _AUDIENCE_RENAMES if audience else _RENAMES
        nested_names = _NESTED_AUDIENCE_RENAMES if audience else _RENAMES
        out = {}
        for key, value in row.items():
            if key in _NESTED and isinstance(value, Mapping):
                for name, item in value.items():
                    out[nested_names.get(name, name)] = None if item == MISSING else item
            else:
                out[names.get(key, key)] = None if value == MISSING else value
        return out

    def from_canonical(self, row: Mapping[str, Any]) -> dict[str, Any]:
        # A missing TikTok metric is "-" even in rows that are otherwise canonical.
        if MISSING in row.values():
            return {key: None if value == MISSING else value for key, value in row.items()}
        return dict(row)
