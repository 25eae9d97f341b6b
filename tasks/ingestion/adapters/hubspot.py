"""HubSpot CRM v3 objects (contacts, deals) -> canonical CRM records.

Accepted: `{"records": [...]}` or a CRM v3 list/search/batch response `{"results": [...],
"paging": {...}}`. An object is `{"id", "properties": {...}, "createdAt", "updatedAt",
"archived"}`; a flat row of property names (an export) maps the same way.

Every property value is a string: amounts ("1500.00"), booleans ("true"/"false", e.g.
hs_is_closed_won), datetimes; coercion converts them. `id` is the contact or deal id.
The object's createdAt (and a contact's updatedAt) fill created_at (source_updated_at) when
the properties (createdate, lastmodifieddate) do not; otherwise they stay in `extra` with
every other unmapped property, `archived` and `associations`.
hs_deal_stage_probability is already a fraction (0.2 = 20 %), the canonical unit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tasks.ingestion.adapters.base import PlatformAdapter, list_under

_CONTACT_NAMES = {
    "id": "contact_id",
    "firstname": "first_name",
    "lastname": "last_name",
    "lifecyclestage": "lifecycle_stage",
    "hs_lead_status": "lead_status",
    "hs_analytics_source": "lead_source",
    "createdate": "created_at",
    "lastmodifieddate": "source_updated_at",
}
_DEAL_NAMES = {
    "id": "deal_id",
    "dealname": "deal_name",
    "dealstage": "stage",
    "deal_currency_code": "currency",
    "hs_deal_stage_probability": "probability",
    "closedate": "close_date",
    "createdate": "created_at",
    "hs_is_closed": "is_closed",
    "hs_is_closed_won": "is_won",
    "hs_analytics_source": "lead_source",
}
_NAMES = {"crm_contacts": _CONTACT_NAMES, "crm_deals": _DEAL_NAMES}
# The object's own timestamps, used when the properties do not carry them.
_OBJECT_TIMESTAMPS = {
    "crm_contacts": {"createdAt": "created_at", "updatedAt": "source_updated_at"},
    "crm_deals": {"createdAt": "created_at"},  # crm_deals has no updated column
}
_NATIVE_KEYS = frozenset({*_CONTACT_NAMES, *_DEAL_NAMES, "properties", "createdAt",
                          "updatedAt"})


class HubSpotAdapter(PlatformAdapter):
    name = "hubspot"
    data_types = frozenset({"crm_contacts", "crm_deals"})
    native_shape = 'a CRM v3 objects response {"results": [...]}'
    native_keys = _NATIVE_KEYS
    default_fields = ("currency",)

    def native_rows(self, data: Any) -> Iterable[Any] | None:
        return list_under(data, "results")

    def from_native(
        self, row: Mapping[str, Any], data_type: str, options: Mapping[str, Any]
    ) -> dict[str, Any]:
        names = _NAMES[data_type]
        object_timestamps = _OBJECT_TIMESTAMPS[data_type]
        out = {}
        timestamps: dict[str, Any] = {}
        for key, value in row.items():
            if key == "properties" and isinstance(value, Mapping):
                for name, item in value.items():
                    out[names.get(name, name)] = item
            elif key in object_timestamps:
                timestamps[key] = value
            else:
                out[names.get(key, key)] = value
        for key, value in timestamps.items():
            field = object_timestamps[key]
            if out.get(field) is None:
                out[field] = value
            else:
                out[key] = value
        return out
