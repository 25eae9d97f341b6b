"""Google Analytics 4 Data API reports -> canonical web analytics records.

Accepted: `{"records": [...]}` (rows already keyed by GA4 or canonical names), a runReport
response `{"dimensionHeaders": [...], "metricHeaders": [...], "rows": [...], "metadata":
{"currencyCode": ...}}` or a batchRunReports response `{"reports": [...]}`.

Report rows are positional (`dimensionValues`/`metricValues` lists of `{"value"}`); each
is zipped with the headers while the ingest stage iterates, so counting rows stays free.
Every value is a string; `date` is YYYYMMDD and integer metrics may come as "15.0" (both
handled by coercion). The report's currency (metadata.currencyCode) is set on its rows.
The property is not named in a report: give it as the ingestion option `property_id`.
`keyEvents` (the newer name of conversions) is read when `conversions` is absent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from tasks.ingestion.adapters.base import ChainedRows, PayloadShapeError, PlatformAdapter

_RENAMES = {
    "sessionSource": "session_source",
    "sessionMedium": "session_medium",
    "sessionCampaignName": "session_campaign",
    "totalUsers": "users",
    "newUsers": "new_users",
    "screenPageViews": "page_views",
    "totalRevenue": "revenue",
    "currencyCode": "currency",
}
_POSITIONAL = ("dimensionValues", "metricValues")
_NATIVE_KEYS = frozenset({*_RENAMES, *_POSITIONAL, "keyEvents"})
_REPORT_KEYS = ("dimensionHeaders", "metricHeaders")


class GA4Adapter(PlatformAdapter):
    name = "ga4"
    data_types = frozenset({"web_analytics"})
    native_shape = ('a runReport response {"dimensionHeaders", "metricHeaders", "rows"} or '
                    'a batchRunReports response {"reports": [...]}')
    native_keys = _NATIVE_KEYS
    default_fields = ("property_id", "currency")

    def native_rows(self, data: Any) -> Iterable[Any] | None:
        if not isinstance(data, Mapping):
            return None
        if any(key in data for key in _REPORT_KEYS):
            return ReportRows(data)
        reports = data.get("reports")
        if isinstance(reports, list) and all(isinstance(r, Mapping) for r in reports):
            return ChainedRows([ReportRows(report) for report in reports])
        return None

    def from_native(
        self, row: Mapping[str, Any], data_type: str, options: Mapping[str, Any]
    ) -> dict[str, Any]:
        if any(key in row for key in _POSITIONAL):
            raise ValueError("a report row's values do not match the report's dimension "
                             "and metric headers (positional rows need the whole "
                             "runReport response)")
        out = {_RENAMES.get(key, key): value for key, value in row.items()}
        if "conversions" not in out and "keyEvents" in out:
            out["conversions"] = out.pop("keyEvents")
        return out


class ReportRows:
    """The rows of one runReport response, each zipped with the header names when iterated."""

    __slots__ = ("_dimensions", "_metrics", "_rows", "_constants")

    def __init__(self, report: Mapping[str, Any]) -> None:
        self._dimensions = _header_names(report, "dimensionHeaders")
        self._metrics = _header_names(report, "metricHeaders")
        rows = report.get("rows", [])
        if not isinstance(rows, list):
            raise PayloadShapeError("ga4: report rows must be a list")
        self._rows = rows
        metadata = report.get("metadata")
        currency = metadata.get("currencyCode") if isinstance(metadata, Mapping) else None
        self._constants = {"currencyCode": currency} if currency else {}

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Any]:
        dimensions, metrics, constants = self._dimensions, self._metrics, self._constants
        for row in self._rows:
            if not isinstance(row, Mapping):
                yield row  # the ingest stage refuses it as not an object
                continue
            dimension_values = row.get("dimensionValues", [])
            metric_values = row.get("metricValues", [])
            if (not isinstance(dimension_values, list) or not isinstance(metric_values, list)
                    or len(dimension_values) != len(dimensions)
                    or len(metric_values) != len(metrics)):
                yield row  # to_canonical refuses it with the reason
                continue
            out = {name: _value(item)
                   for name, item in zip(dimensions, dimension_values, strict=True)}
            for name, item in zip(metrics, metric_values, strict=True):
                out[name] = _value(item)
            if constants:
                out.update(constants)
            yield out


def _value(item: Any) -> Any:
    return item.get("value") if isinstance(item, Mapping) else item


def _header_names(report: Mapping[str, Any], key: str) -> list[str]:
    headers = report.get(key, [])
    if not isinstance(headers, list) or not all(
        isinstance(h, Mapping) and isinstance(h.get("name"), str) for h in headers
    ):
        raise PayloadShapeError(f'ga4: {key} must be a list of {{"name": ...}} objects')
    return [header["name"] for header in headers]
