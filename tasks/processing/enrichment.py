"""Audience enrichment: each campaign record gets a summary of its campaign's stored audience.

The summary (`audience`, in `extra` until the table declares such a column) describes the
campaign's latest audience snapshot, the stored `audience` rows of its most recent date:

    {"as_of": "2025-01-15", "segments_count": 12,
     "audience_size": 48000, "reach": 30500, "impressions": 91000, "clicks": 2100,
     "segments": [{"age": "25-34", "gender": "female", "country": "US",
                   "audience_size": 9000, "reach": 6000, "impressions": 15000, "clicks": 400},
                  ...],               # the largest SEGMENTS_CAP segments
     "segments_truncated": true}

The list is capped because the summary travels with every record of its campaign through
the stage payloads and into the stored row. Totals are sums over all the snapshot's
segments (null when no segment has the value).
A record matches on (source, campaign_id); a record without a source matches a campaign
stored under exactly one source. Records without a match are counted, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tasks.datatypes import DataType
from tasks.processing.lookups import CampaignKey, Lookups
from tasks.processing.placement import place

AUDIENCE_FIELD = "audience"
# Records of these data types are campaigns of an ad platform, as audience rows are.
ENRICHABLE = frozenset({"campaign_performance", "ad_performance"})


@dataclass
class Enrichment:
    enriched: int = 0
    unmatched: int = 0


def can_enrich(data_type: DataType) -> bool:
    return data_type.name in ENRICHABLE


def _match(summaries: dict[CampaignKey, Any]) -> Any:
    by_campaign: dict[str, list[Any]] = {}
    for (_, campaign_id), summary in summaries.items():
        by_campaign.setdefault(campaign_id, []).append(summary)

    def match(source: str | None, campaign_id: str) -> Any:
        summary = summaries.get((source, campaign_id))
        if summary is None and source is None:
            candidates = by_campaign.get(campaign_id, ())
            if len(candidates) == 1:
                summary = candidates[0]
        return summary

    return match


def enrich_with_audience(
    items: list[tuple[int, dict[str, Any]]], data_type: DataType, lookups: Lookups
) -> Enrichment:
    """Attach audience summaries to `items` ((index, record) pairs) in place; one lookup call."""
    result = Enrichment()
    keys = {
        (record.get("source"), record["campaign_id"])
        for _, record in items if record.get("campaign_id") is not None
    }
    match = _match(dict(lookups.audience_for(keys))) if keys else None
    for _, record in items:
        campaign_id = record.get("campaign_id")
        summary = None
        if match is not None and campaign_id is not None:
            summary = match(record.get("source"), campaign_id)
        if summary is None:
            result.unmatched += 1
        else:
            # One summary object per campaign, shared by its records: never mutated after.
            place(record, data_type, AUDIENCE_FIELD, summary)
            result.enriched += 1
    return result
