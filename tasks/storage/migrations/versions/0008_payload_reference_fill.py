"""A reference chunk may also set fields on the records it stands for (`fill`).

The ingest stage of a source whose records already carry canonical names (`generic`)
passes on its input's records as they came, with only the job's source set where a record
has none: its output is now stored as a reference to the raw chunk with that field to
fill, rather than encoded and written again (see migration 0007).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE pipeline_payloads ADD COLUMN fill jsonb")


def downgrade() -> None:
    # Without it a reference would read as records lacking the fields it set: refused
    # while an unfinished job holds one (see 0007); a finished job's are dropped.
    op.execute("""
        DO $$ BEGIN
            IF EXISTS (SELECT 1 FROM pipeline_payloads p
                       JOIN pipeline_jobs j ON j.id = p.job_id
                       WHERE p.fill IS NOT NULL AND j.status NOT IN ('succeeded', 'failed'))
            THEN RAISE EXCEPTION 'unfinished jobs hold stage outputs stored as references:'
                ' let them finish (stop the API first) before downgrading';
            END IF;
        END $$
    """)
    op.execute("DELETE FROM pipeline_payloads WHERE fill IS NOT NULL")
    op.execute("ALTER TABLE pipeline_payloads DROP COLUMN fill")
