"""accepted_at on every data table: of two writes of one key, the later-accepted batch wins.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("campaign_performance", "ad_performance", "audience", "crm_contacts", "crm_deals",
          "web_analytics", "fx_rates")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        op.drop_column(table, "accepted_at")
