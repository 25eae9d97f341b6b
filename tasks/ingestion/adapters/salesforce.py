"""Salesforce Opportunity / Lead / Contact records -> canonical CRM records.

Accepted: `{"records": [...]}`, which is also the shape of a REST query result
`{"totalSize": N, "done": true, "nextRecordsUrl": ..., "records": [...]}`.

Each record carries `attributes` {"type", "url"}: it is dropped, after checking that the
type fits the data type (Opportunity -> crm_deals; Lead or Contact -> crm_contacts).
Field values are JSON typed: IsWon/IsClosed/IsConverted booleans, Amount a number,
CloseDate a date, CreatedDate "2025-01-15T10:00:00.000+0000". Probability is a percentage
in Salesforce (0-100); it becomes the canonical fraction (0-1), as HubSpot sends it.
Unmapped fields, relationship objects included, are kept under their own names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tasks.coerce import to_decimal
from tasks.ingestion.adapters.base import PlatformAdapter

_LEAD_NAMES = {
    "Id": "contact_id",
    "Email": "email",
    "FirstName": "first_name",
    "LastName": "last_name",
    "Company": "company",
    "Country": "country",
    "MailingCountry": "country",  # Contact
    "Status": "lead_status",
    "LeadSource": "lead_source",
    "IsConverted": "is_converted",
    "ConvertedDate": "converted_date",
    "CreatedDate": "created_at",
    "LastModifiedDate": "source_updated_at",
    "CurrencyIsoCode": "currency",
}
_OPPORTUNITY_NAMES = {
    "Id": "deal_id",
    "Name": "deal_name",
    "StageName": "stage",
    "Amount": "amount",
    "CurrencyIsoCode": "currency",
    "Probability": "probability",
    "CloseDate": "close_date",
    "CreatedDate": "created_at",
    "IsClosed": "is_closed",
    "IsWon": "is_won",
    "LeadSource": "lead_source",
    "CampaignId": "campaign_id",
}
_NAMES = {"crm_contacts": _LEAD_NAMES, "crm_deals": _OPPORTUNITY_NAMES}
_OBJECT_TYPES = {"crm_contacts": ("Lead", "Contact"), "crm_deals": ("Opportunity",)}
_NATIVE_KEYS = frozenset({*_LEAD_NAMES, *_OPPORTUNITY_NAMES, "attributes"})


class SalesforceAdapter(PlatformAdapter):
    name = "salesforce"
    data_types = frozenset({"crm_contacts", "crm_deals"})
    native_shape = 'a query result {"totalSize": N, "done": true, "records": [...]}'
    native_keys = _NATIVE_KEYS
    default_fields = ("currency",)

    def native_rows(self, data: Any) -> Iterable[Any] | None:
        return None  # a query result has `records`, handled by rows()

    def from_native(
        self, row: Mapping[str, Any], data_type: str, options: Mapping[str, Any]
    ) -> dict[str, Any]:
        attributes = row.get("attributes")
        if isinstance(attributes, Mapping):
            _check_type(attributes.get("type"), data_type)
        names = _NAMES[data_type]
        out = {names.get(key, key): value for key, value in row.items()
               if key != "attributes"}
        if "Probability" in row and data_type == "crm_deals":
            out["probability"] = percent_to_fraction(row["Probability"])
        return out


def _check_type(object_type: Any, data_type: str) -> None:
    expected = _OBJECT_TYPES[data_type]
    if object_type is not None and object_type not in expected:
        raise ValueError(f"a Salesforce {object_type} record is not a {data_type} record "
                         f"(expected {' or '.join(expected)})")


def percent_to_fraction(value: Any) -> Any:
    """10 (percent) -> Decimal("0.10"); None stays None; ValueError if not a number."""
    try:
        number = to_decimal(value)
    except ValueError:
        raise ValueError(f"Probability must be a percentage, got {value!r}") from None
    return None if number is None else number.scaleb(-2)
