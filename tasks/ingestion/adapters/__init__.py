"""Source adapters by name.

Every platform adapter accepts `{"records": [...]}` (native rows, or canonical records as
in the seed's examples sent with source meta_ads) and the platform's whole response.
"""

from __future__ import annotations

from tasks.ingestion.adapters.base import Adapter, PayloadShapeError
from tasks.ingestion.adapters.ga4 import GA4Adapter
from tasks.ingestion.adapters.generic import GenericAdapter
from tasks.ingestion.adapters.google_ads import GoogleAdsAdapter
from tasks.ingestion.adapters.hubspot import HubSpotAdapter
from tasks.ingestion.adapters.linkedin_ads import LinkedInAdsAdapter
from tasks.ingestion.adapters.meta_ads import MetaAdsAdapter
from tasks.ingestion.adapters.salesforce import SalesforceAdapter
from tasks.ingestion.adapters.tiktok_ads import TikTokAdsAdapter

ADAPTERS: dict[str, Adapter] = {
    adapter.name: adapter
    for adapter in (
        GenericAdapter(),
        MetaAdsAdapter(),
        GoogleAdsAdapter(),
        TikTokAdsAdapter(),
        LinkedInAdsAdapter(),
        HubSpotAdapter(),
        SalesforceAdapter(),
        GA4Adapter(),
    )
}

DEFAULT_SOURCE = "generic"


class UnknownSource(LookupError):
    def __init__(self, name: object) -> None:
        super().__init__(f"unknown source {name!r}; known: {', '.join(sorted(ADAPTERS))}")
        self.name = name


class UnsupportedDataType(ValueError):
    def __init__(self, source: str, data_type: str, supported: frozenset[str]) -> None:
        super().__init__(
            f"source {source!r} cannot produce {data_type!r}; it can produce: "
            f"{', '.join(sorted(supported))}"
        )
        self.supported = sorted(supported)


def get_adapter(source: str | None, data_type: str) -> Adapter:
    name = source or DEFAULT_SOURCE
    adapter = ADAPTERS.get(name) if isinstance(name, str) else None
    if adapter is None:
        raise UnknownSource(name)
    if data_type not in adapter.data_types:
        raise UnsupportedDataType(name, data_type, adapter.data_types)
    return adapter


__all__ = [
    "ADAPTERS", "Adapter", "PayloadShapeError", "UnknownSource", "UnsupportedDataType",
    "get_adapter",
]
