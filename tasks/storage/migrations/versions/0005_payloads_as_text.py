"""Claim-check payloads as JSON text, lz4-compressed where the server supports it.

Measured on a 2 MB chunk of 10,000 records: bytea with the default pglz took 42 ms to
write, text with lz4 15 ms and uncompressed text 19 ms (bytea travels hex-escaped and
pglz is slow). Servers built without lz4 (the embedded wheel) store it uncompressed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE pipeline_payloads ALTER COLUMN body TYPE text "
               "USING convert_from(body, 'UTF8')")
    op.execute("""
        DO $$ BEGIN
            ALTER TABLE pipeline_payloads ALTER COLUMN body SET COMPRESSION lz4;
        EXCEPTION WHEN OTHERS THEN
            ALTER TABLE pipeline_payloads ALTER COLUMN body SET STORAGE EXTERNAL;
        END $$
    """)


def downgrade() -> None:
    op.execute("ALTER TABLE pipeline_payloads ALTER COLUMN body SET STORAGE EXTENDED")
    op.execute("ALTER TABLE pipeline_payloads ALTER COLUMN body TYPE bytea "
               "USING convert_to(body, 'UTF8')")
