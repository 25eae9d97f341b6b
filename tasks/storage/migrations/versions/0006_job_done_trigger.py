"""A job's finish is announced by the database: NOTIFY pipeline_job_done from a trigger.

The long poll (webapp/job_events.py) listens on that channel. Workers used to send the
NOTIFY themselves, one more round trip at the end of every job; the trigger sends it in
the same statement that sets the final status, whichever code path sets it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE FUNCTION pipeline_notify_job_done() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('pipeline_job_done', NEW.id::text);
            RETURN NULL;
        END $$
    """)
    op.execute("""
        CREATE TRIGGER pipeline_job_done
        AFTER UPDATE OF status ON pipeline_jobs
        FOR EACH ROW
        WHEN (NEW.status IN ('succeeded', 'failed')
              AND OLD.status IS DISTINCT FROM NEW.status)
        EXECUTE FUNCTION pipeline_notify_job_done()
    """)


def downgrade() -> None:
    op.execute("DROP TRIGGER pipeline_job_done ON pipeline_jobs")
    op.execute("DROP FUNCTION pipeline_notify_job_done()")
