"""Partition the large fact tables by month of `date`; indexes for the common filters.

Each fact table becomes RANGE-partitioned on `date`: one partition per month that has
data (more are created by the store stage as data arrives) and a DEFAULT partition that
only holds NULL dates (its CHECK lets PostgreSQL attach new months without scanning it).
A primary key cannot contain the nullable date, so `id` stays an identity column without
one, indexed on its own. Existing rows are moved with their ids.

Also creates pipeline_secrets (the retrieval cursor signing key lives there).

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# table: (natural key, filter columns that get a (column, date, id) index)
FACT_TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "campaign_performance": (
        ("source", "account_id", "campaign_id", "date"), ("account_id", "campaign_id")),
    "ad_performance": (
        ("source", "account_id", "campaign_id", "adset_id", "ad_id", "date"),
        ("account_id", "campaign_id")),
    "audience": (
        ("source", "account_id", "campaign_id", "date", "age", "gender", "country", "region",
         "platform", "device"),
        ("account_id", "campaign_id")),
    "web_analytics": (
        ("source", "property_id", "date", "session_source", "session_medium",
         "session_campaign"),
        ("property_id",)),
}


def _q(name: str) -> str:
    """A quoted identifier; every name here is a constant of this file."""
    return '"' + name.replace('"', '""') + '"'


def _cols(columns: tuple[str, ...]) -> str:
    return ", ".join(_q(c) for c in columns)


def _move_rows(conn: sa.Connection, source: str, target: str) -> None:
    conn.exec_driver_sql(f"INSERT INTO {_q(target)} SELECT * FROM {_q(source)}")
    conn.exec_driver_sql(
        f"SELECT setval(pg_get_serial_sequence('{target}', 'id'), "
        f"coalesce((SELECT max(id) FROM {_q(target)}), 0) + 1, false)")


def _rename_sequence(conn: sa.Connection, table: str) -> None:
    """The identity sequence of the new table was named while the old one still existed."""
    current = conn.exec_driver_sql(
        f"SELECT pg_get_serial_sequence('{table}', 'id')").scalar_one()
    wanted = f"{table}_id_seq"
    if current.split(".")[-1].strip('"') != wanted:
        conn.exec_driver_sql(f"ALTER SEQUENCE {current} RENAME TO {_q(wanted)}")


def _partition(conn: sa.Connection, table: str) -> None:
    old = f"{table}_unpartitioned"
    key, filter_columns = FACT_TABLES[table]
    conn.exec_driver_sql(f"ALTER TABLE {_q(table)} RENAME TO {_q(old)}")
    conn.exec_driver_sql(
        f"CREATE TABLE {_q(table)} (LIKE {_q(old)} INCLUDING DEFAULTS INCLUDING IDENTITY) "
        "PARTITION BY RANGE (date)")
    default = f"{table}_pdefault"
    conn.exec_driver_sql(f"CREATE TABLE {_q(default)} PARTITION OF {_q(table)} DEFAULT")
    conn.exec_driver_sql(
        f"ALTER TABLE {_q(default)} ADD CONSTRAINT {_q(default + '_date_null')} "
        "CHECK (date IS NULL)")
    months = conn.exec_driver_sql(
        f"SELECT DISTINCT date_trunc('month', date)::date FROM {_q(old)} "
        "WHERE date IS NOT NULL ORDER BY 1").scalars().all()
    for month in months:
        name = f"{table}_p{month.year:04d}{month.month:02d}"
        conn.exec_driver_sql(
            f"CREATE TABLE {_q(name)} PARTITION OF {_q(table)} FOR VALUES FROM "
            f"('{month.isoformat()}') TO (('{month.isoformat()}'::date + interval '1 month')"
            "::date)")
    _move_rows(conn, old, table)
    conn.exec_driver_sql(f"DROP TABLE {_q(old)}")
    _rename_sequence(conn, table)
    conn.exec_driver_sql(
        f"CREATE UNIQUE INDEX {_q(f'uq_{table}_natural_key')} ON {_q(table)} ({_cols(key)}) "
        "NULLS NOT DISTINCT")
    conn.exec_driver_sql(f"CREATE INDEX {_q(f'ix_{table}_id')} ON {_q(table)} (id)")
    # Latest first, then by campaign: the usual listing, read straight off the index.
    by_campaign = "campaign_id, " if "campaign_id" in filter_columns else ""
    conn.exec_driver_sql(
        f"CREATE INDEX {_q(f'ix_{table}_date')} ON {_q(table)} (date DESC, {by_campaign}id)")
    for column in filter_columns:
        conn.exec_driver_sql(
            f"CREATE INDEX {_q(f'ix_{table}_{column}_date')} ON {_q(table)} "
            f"({_q(column)}, date, id)")
    conn.exec_driver_sql(f"ANALYZE {_q(table)}")


def _unpartition(conn: sa.Connection, table: str) -> None:
    old = f"{table}_partitioned"
    key, _ = FACT_TABLES[table]
    conn.exec_driver_sql(f"ALTER TABLE {_q(table)} RENAME TO {_q(old)}")
    for index in (f"uq_{table}_natural_key", f"ix_{table}_date"):
        conn.exec_driver_sql(f"ALTER INDEX {_q(index)} RENAME TO {_q(index + '_old')}")
    conn.exec_driver_sql(
        f"CREATE TABLE {_q(table)} (LIKE {_q(old)} INCLUDING DEFAULTS INCLUDING IDENTITY)")
    conn.exec_driver_sql(
        f"ALTER TABLE {_q(table)} ADD CONSTRAINT {_q(table + '_pkey')} PRIMARY KEY (id)")
    _move_rows(conn, old, table)
    conn.exec_driver_sql(f"DROP TABLE {_q(old)}")
    _rename_sequence(conn, table)
    conn.exec_driver_sql(
        f"CREATE UNIQUE INDEX {_q(f'uq_{table}_natural_key')} ON {_q(table)} ({_cols(key)}) "
        "NULLS NOT DISTINCT")
    conn.exec_driver_sql(f"CREATE INDEX {_q(f'ix_{table}_date')} ON {_q(table)} (date)")


def upgrade() -> None:
    conn = op.get_bind()
    for table in FACT_TABLES:
        _partition(conn, table)
    op.create_table(
        "pipeline_secrets",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
    )


def downgrade() -> None:
    conn = op.get_bind()
    op.drop_table("pipeline_secrets")
    for table in FACT_TABLES:
        _unpartition(conn, table)
