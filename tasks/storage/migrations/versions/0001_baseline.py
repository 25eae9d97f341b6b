"""Baseline: the schema as the service created it before migrations existed.

Tables that already exist are left alone, so a database made by the old
`metadata.create_all` is adopted as revision 0001 and then upgraded like any other.
The columns are frozen here on purpose: later declaration changes need a new revision.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

T, N, D, DT, TS, B, J = "text", "bigint", "numeric", "date", "timestamptz", "boolean", "jsonb"
TYPES = {
    T: sa.Text(), N: sa.BigInteger(), D: sa.Numeric(), DT: sa.Date(),
    TS: sa.DateTime(timezone=True), B: sa.Boolean(), J: JSONB(),
}
LINEAGE = {"extra": J, "job_id": T, "ingested_at": TS, "updated_at": TS}
AD_FACTS = {
    "currency": T, "spend": D, "impressions": N, "clicks": N, "reach": N,
    "conversions": D, "conversion_value": D,
}
AD_RATIOS = {name: D for name in (
    "ctr", "cpc", "cpm", "cpa", "conversion_rate", "roas", "frequency")}

# name: (columns, natural key, date column)
DATA_TABLES: dict[str, tuple[dict[str, str], tuple[str, ...], str | None]] = {
    "campaign_performance": (
        {"source": T, "account_id": T, "campaign_id": T, "campaign_name": T, "date": DT,
         **AD_FACTS, **AD_RATIOS, **LINEAGE},
        ("source", "account_id", "campaign_id", "date"), "date"),
    "ad_performance": (
        {"source": T, "account_id": T, "campaign_id": T, "campaign_name": T, "adset_id": T,
         "adset_name": T, "ad_id": T, "ad_name": T, "date": DT,
         **AD_FACTS, **AD_RATIOS, **LINEAGE},
        ("source", "account_id", "campaign_id", "adset_id", "ad_id", "date"), "date"),
    "audience": (
        {"source": T, "account_id": T, "campaign_id": T, "date": DT, "age": T, "gender": T,
         "country": T, "region": T, "platform": T, "device": T, "audience_size": N,
         **AD_FACTS, **AD_RATIOS, **LINEAGE},
        ("source", "account_id", "campaign_id", "date", "age", "gender", "country", "region",
         "platform", "device"), "date"),
    "crm_contacts": (
        {"source": T, "contact_id": T, "email": T, "first_name": T, "last_name": T,
         "company": T, "country": T, "lifecycle_stage": T, "lead_status": T, "lead_source": T,
         "is_converted": B, "converted_date": DT, "created_at": TS, "source_updated_at": TS,
         "currency": T, **LINEAGE},
        ("source", "contact_id"), None),
    "crm_deals": (
        {"source": T, "deal_id": T, "deal_name": T, "stage": T, "pipeline": T, "amount": D,
         "currency": T, "probability": D, "close_date": DT, "created_at": TS, "is_closed": B,
         "is_won": B, "lead_source": T, "campaign_id": T, "won": B, "days_to_close": N,
         **LINEAGE},
        ("source", "deal_id"), "close_date"),
    "web_analytics": (
        {"source": T, "property_id": T, "date": DT, "session_source": T, "session_medium": T,
         "session_campaign": T, "sessions": N, "users": N, "new_users": N, "page_views": N,
         "conversions": D, "revenue": D, "currency": T, "conversion_rate": D,
         "revenue_per_session": D, **LINEAGE},
        ("source", "property_id", "date", "session_source", "session_medium",
         "session_campaign"), "date"),
    "fx_rates": (
        {"source": T, "date": DT, "from_currency": T, "to_currency": T, "rate": D, **LINEAGE},
        ("source", "date", "from_currency", "to_currency"), "date"),
}


def _tables(metadata: sa.MetaData) -> None:
    sa.Table(
        "pipeline_jobs", metadata,
        sa.Column("id", UUID(as_uuid=False), primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("data_type", sa.Text, nullable=False),
        sa.Column("source", sa.Text),
        sa.Column("options", JSONB, nullable=False, server_default="{}"),
        sa.Column("stages", JSONB, nullable=False),
        sa.Column("records_count", sa.Integer, nullable=False),
        sa.Column("result", JSONB),
        sa.Column("error", JSONB),
        sa.Column("progress", JSONB),
        sa.Column("idempotency_key", sa.Text, unique=True),
        sa.Column("request_hash", sa.Text),
        sa.Column("enqueue_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Index("ix_pipeline_jobs_status_updated", "status", "updated_at"),
        sa.Index("ix_pipeline_jobs_created", "created_at"),
    )
    sa.Table(
        "pipeline_payloads", metadata,
        sa.Column("job_id", UUID(as_uuid=False),
                  sa.ForeignKey("pipeline_jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("record_count", sa.Integer, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    sa.Table(
        "pipeline_rejected", metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("job_id", UUID(as_uuid=False),
                  sa.ForeignKey("pipeline_jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("record_index", sa.Integer, nullable=False),
        sa.Column("record", JSONB, nullable=False),
        sa.Column("reasons", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("replayed_by", UUID(as_uuid=False)),
        sa.Index("ix_pipeline_rejected_job", "job_id", "id"),
    )
    for name, (columns, key, date_column) in DATA_TABLES.items():
        indexes = [sa.Index(f"uq_{name}_natural_key", *key, unique=True,
                            postgresql_nulls_not_distinct=True)]
        if date_column:
            indexes.append(sa.Index(f"ix_{name}_date", date_column))
        sa.Table(
            name, metadata,
            sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
            *(sa.Column(column, TYPES[kind]) for column, kind in columns.items()),
            *indexes,
        )


def upgrade() -> None:
    metadata = sa.MetaData()
    _tables(metadata)
    metadata.create_all(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    metadata = sa.MetaData()
    _tables(metadata)
    metadata.drop_all(op.get_bind())
