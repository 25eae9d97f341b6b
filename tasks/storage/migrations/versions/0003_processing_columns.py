"""Columns the process stage fills: the originals kept by currency conversion, and the
audience summary of enrichment.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

CONVERTED_AD = (
    ("original_currency", sa.Text()),
    ("original_spend", sa.Numeric()),
    ("original_conversion_value", sa.Numeric()),
)
NEW_COLUMNS = {
    "campaign_performance": (*CONVERTED_AD, ("audience", JSONB())),
    "ad_performance": (*CONVERTED_AD, ("audience", JSONB())),
    "audience": CONVERTED_AD,
    "crm_deals": (("original_currency", sa.Text()), ("original_amount", sa.Numeric())),
    "web_analytics": (("original_currency", sa.Text()), ("original_revenue", sa.Numeric())),
}


def upgrade() -> None:
    # On a partitioned table ADD COLUMN reaches every partition.
    for table, columns in NEW_COLUMNS.items():
        for name, type_ in columns:
            op.add_column(table, sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    for table, columns in NEW_COLUMNS.items():
        for name, _type in reversed(columns):
            op.drop_column(table, name)
