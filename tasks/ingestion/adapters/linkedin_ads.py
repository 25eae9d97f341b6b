"""LinkedIn Ads adAnalytics elements -> canonical ad records.

Accepted: `{"records": [...]}` or the adAnalytics response `{"elements": [...], "paging": ...}`.

An element: `{"dateRange": {"start": {"year", "month", "day"}, "end": {...}},
"pivotValues": ["urn:li:sponsoredCampaign:123"], "impressions": 100, "clicks": 5,
"costInLocalCurrency": "12.5", "costInUsd": "13.1", "externalWebsiteConversions": 1,
"conversionValueInLocalCurrency": "40.0"}`. Older responses carry one `pivotValue`.

- The pivot URNs give the ids: sponsoredCampaign -> campaign_id, sponsoredCreative ->
  ad_id, sponsoredAccount -> account_id, sponsoredCampaignGroup -> campaign_group_id.
  If a pivot is of another kind (a company, a member demographic), `pivotValues` is kept.
- `dateRange.start` is the record's date; the end is kept as `date_end` when it differs
  (granularity ALL or MONTHLY).
- spend is costInLocalCurrency and conversion_value conversionValueInLocalCurrency: both in
  the account's currency, so roas stays a ratio of one currency. LinkedIn does not name that
  currency in analytics rows: give it as the ingestion option `currency` (and `account_id`
  when the rows are not pivoted by account). costInUsd is kept in `extra`.
- reach is approximateMemberReach (approximateUniqueImpressions in older versions).

Names are not in analytics rows. Member demographic pivots (seniority, industry, job
function, company size, geo ids) do not fit the audience columns, so this source produces
campaign and ad performance only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from tasks.ingestion.adapters.base import PlatformAdapter, list_under

_RENAMES = {
    "costInLocalCurrency": "spend",
    "conversionValueInLocalCurrency": "conversion_value",
    "externalWebsiteConversions": "conversions",
    "approximateMemberReach": "reach",
}
_URN_FIELDS = {
    "sponsoredCampaign": "campaign_id",
    "sponsoredCreative": "ad_id",
    "sponsoredAccount": "account_id",
    "sponsoredCampaignGroup": "campaign_group_id",
}
_URN_PREFIX = "urn:li:"
_NATIVE_KEYS = frozenset({*_RENAMES, "dateRange", "pivotValues", "pivotValue",
                          "approximateUniqueImpressions"})


class LinkedInAdsAdapter(PlatformAdapter):
    name = "linkedin_ads"
    data_types = frozenset({"campaign_performance", "ad_performance"})
    native_shape = 'the adAnalytics response {"elements": [...]}'
    native_keys = _NATIVE_KEYS

    def native_rows(self, data: Any) -> Iterable[Any] | None:
        return list_under(data, "elements")

    def from_native(
        self, row: Mapping[str, Any], data_type: str, options: Mapping[str, Any]
    ) -> dict[str, Any]:
        out = {_RENAMES.get(key, key): value for key, value in row.items()}
        if "reach" not in out and "approximateUniqueImpressions" in out:
            out["reach"] = out.pop("approximateUniqueImpressions")
        if "dateRange" in out:
            _put_dates(out, out.pop("dateRange"))
        pivots = out.pop("pivotValues", None)
        if pivots is None and "pivotValue" in out:
            pivots = [out.pop("pivotValue")]
        if pivots is not None:
            _put_pivots(out, pivots)
        return out


def parse_urn(urn: Any) -> tuple[str, str]:
    """("sponsoredCampaign", "123") from "urn:li:sponsoredCampaign:123"; ValueError if not a URN."""
    if not isinstance(urn, str) or not urn.startswith(_URN_PREFIX):
        raise ValueError(f"expected a LinkedIn URN like urn:li:sponsoredCampaign:123, got {urn!r}")
    kind, _, ident = urn[len(_URN_PREFIX):].partition(":")
    if not kind or not ident:
        raise ValueError(f"expected a LinkedIn URN like urn:li:sponsoredCampaign:123, got {urn!r}")
    return kind, ident


def _put_pivots(out: dict[str, Any], pivots: Any) -> None:
    if not isinstance(pivots, list):
        raise ValueError(f"pivotValues must be a list of URNs, got {pivots!r}")
    unmapped = False
    for position, urn in enumerate(pivots):
        try:
            kind, ident = parse_urn(urn)
        except ValueError as exc:
            raise ValueError(f"pivotValues[{position}]: {exc}") from None
        field = _URN_FIELDS.get(kind)
        if field is None:
            unmapped = True
        else:
            out[field] = ident
    if unmapped:
        out["pivotValues"] = pivots


def _put_dates(out: dict[str, Any], date_range: Any) -> None:
    if not isinstance(date_range, Mapping):
        raise ValueError(f"dateRange must be an object with start and end, got {date_range!r}")
    start = linkedin_date(date_range.get("start"), "dateRange.start")
    out["date"] = start
    end = date_range.get("end")
    if end is not None:
        end_date = linkedin_date(end, "dateRange.end")
        if end_date != start:
            out["date_end"] = end_date.isoformat()


def linkedin_date(value: Any, field: str = "date") -> date:
    """A date from LinkedIn's {"year", "month", "day"}; ValueError if it is not one."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{field} must be {{year, month, day}}, got {value!r}")
    try:
        return date(value["year"], value["month"], value["day"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{field} must be {{year, month, day}}, got {value!r}") from None
