"""What the process stage reads from the database: audience summaries and currency rates.

The core only sees the `Lookups` protocol, so it stays a pure function (tests pass a fake).
`DbLookups` answers each method with one SQLAlchemy Core select per batch, values bound
as parameters, never one query per record.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import Text, any_, bindparam, func, select, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection

from tasks.storage.schema import DATA_TABLES

CampaignKey = tuple[str | None, str]  # (source, campaign_id)
Pair = tuple[str, str]  # (from_currency, to_currency), upper case
RateSeries = Sequence[tuple[date, Decimal]]  # ascending dates

SEGMENTS_CAP = 5  # segments listed per campaign summary; the totals cover all of them
SEGMENT_DIMENSIONS = ("age", "gender", "country", "region", "platform", "device")
SEGMENT_COUNTS = ("audience_size", "reach", "impressions", "clicks")


class Lookups(Protocol):
    def audience_for(self, campaign_keys: Collection[CampaignKey]) -> Mapping[CampaignKey, Any]:
        """Audience summaries of the campaigns whose ids appear in `campaign_keys`, keyed by
        their stored (source, campaign_id), for every source (the caller matches sources)."""
        ...

    def fx_rates(
        self, pairs: Collection[Pair], since: date | None, until: date | None
    ) -> Mapping[Pair, RateSeries]:
        """Positive rates per pair dated up to `until` (no bound when None), from the latest
        one on or before `since` (everything when None) onward, ascending by date."""
        ...


class NoLookups:
    """No database: no audience data and no rates (everything unmatched or flagged)."""

    def audience_for(self, campaign_keys: Collection[CampaignKey]) -> Mapping[CampaignKey, Any]:
        return {}

    def fx_rates(
        self, pairs: Collection[Pair], since: date | None, until: date | None
    ) -> Mapping[Pair, RateSeries]:
        return {}


def _summary(rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    first = rows[0]
    as_of = first["date"]
    segments = []
    for row in rows:
        segment = {d: row[d] for d in SEGMENT_DIMENSIONS if row[d] is not None}
        segment.update({c: row[c] for c in SEGMENT_COUNTS if row[c] is not None})
        segments.append(segment)
    return {
        "as_of": as_of.isoformat() if as_of is not None else None,
        "segments_count": first["segments_count"],
        **{c: (int(first[f"total_{c}"]) if first[f"total_{c}"] is not None else None)
           for c in SEGMENT_COUNTS},
        "segments": segments,
        "segments_truncated": first["segments_count"] > len(segments),
    }


class DbLookups:
    """Lookups on the stored `audience` and `fx_rates` tables through `conn`."""

    def __init__(self, conn: Connection, segments_cap: int = SEGMENTS_CAP) -> None:
        self.conn = conn
        self.segments_cap = segments_cap

    def audience_for(self, campaign_keys: Collection[CampaignKey]) -> Mapping[CampaignKey, Any]:
        ids = sorted({campaign_id for _, campaign_id in campaign_keys if campaign_id is not None})
        if not ids:
            return {}
        a = DATA_TABLES["audience"]
        campaign = (a.c.source, a.c.campaign_id)
        # The campaign's latest snapshot: its rows of the most recent date (undated rows last).
        latest = (
            select(
                a.c.id, a.c.source, a.c.campaign_id, a.c.date,
                *(a.c[d] for d in SEGMENT_DIMENSIONS), *(a.c[c] for c in SEGMENT_COUNTS),
                func.dense_rank().over(
                    partition_by=campaign, order_by=a.c.date.desc().nulls_last()
                ).label("snapshot"),
            )
            .where(a.c.campaign_id == any_(bindparam("ids", ids, type_=ARRAY(Text))))
            .subquery()
        )
        s = latest.c
        group = (s.source, s.campaign_id)
        ranked = (
            select(
                s.source, s.campaign_id, s.date, *(s[d] for d in SEGMENT_DIMENSIONS),
                *(s[c] for c in SEGMENT_COUNTS),
                func.count().over(partition_by=group).label("segments_count"),
                *(func.sum(s[c]).over(partition_by=group).label(f"total_{c}")
                  for c in SEGMENT_COUNTS),
                func.row_number().over(
                    partition_by=group,
                    order_by=(s.audience_size.desc().nulls_last(), s.reach.desc().nulls_last(),
                              s.impressions.desc().nulls_last(), s.id),
                ).label("position"),
            )
            .where(s.snapshot == 1)
            .subquery()
        )
        query = (
            select(ranked)
            .where(ranked.c.position <= self.segments_cap)
            .order_by(ranked.c.source, ranked.c.campaign_id, ranked.c.position)
        )
        grouped: dict[CampaignKey, list[Mapping[str, Any]]] = {}
        for row in self.conn.execute(query).mappings():
            grouped.setdefault((row["source"], row["campaign_id"]), []).append(row)
        return {key: _summary(rows) for key, rows in grouped.items()}

    def fx_rates(
        self, pairs: Collection[Pair], since: date | None, until: date | None
    ) -> Mapping[Pair, RateSeries]:
        if not pairs:
            return {}
        fx = DATA_TABLES["fx_rates"]
        src, dst = func.upper(fx.c.from_currency), func.upper(fx.c.to_currency)
        query = (
            select(src.label("src"), dst.label("dst"), fx.c.date, fx.c.rate)
            .where(tuple_(src, dst).in_(sorted(pairs)), fx.c.rate > 0, fx.c.date.is_not(None))
            .order_by(src, dst, fx.c.date, fx.c.updated_at, fx.c.id)
        )
        if until is not None:
            query = query.where(fx.c.date <= until)
        if since is not None:
            # Rates before `since` matter only through the latest of them.
            earlier = fx.alias("earlier")
            floor = (
                select(func.max(earlier.c.date))
                .where(func.upper(earlier.c.from_currency) == src,
                       func.upper(earlier.c.to_currency) == dst,
                       earlier.c.rate > 0, earlier.c.date <= since)
                .scalar_subquery()
            )
            query = query.where(fx.c.date >= func.coalesce(floor, since))
        by_pair: dict[Pair, dict[date, Decimal]] = {}
        for src_code, dst_code, day, rate in self.conn.execute(query):
            # Several sources on one date: the most recently written rate wins.
            by_pair.setdefault((src_code, dst_code), {})[day] = rate
        return {pair: sorted(days.items()) for pair, days in by_pair.items()}
