"""Alembic environment: runs the migrations on the connection create_schema passes in,
or, from the `alembic` command line, on DATABASE_URL (or sqlalchemy.url in alembic.ini).

Every upgrade takes the migration advisory lock first, so concurrent starters and a
hand-run `alembic upgrade` never interleave.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection

from tasks.storage.migrate import MIGRATION_LOCK, include_object
from tasks.storage.schema import metadata


def run(connection: Connection) -> None:
    context.configure(
        connection=connection, target_metadata=metadata, include_object=include_object,
        compare_type=True,
    )
    with context.begin_transaction():
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        context.run_migrations()


def main() -> None:
    if context.is_offline_mode():
        raise SystemExit("offline (--sql) migrations are not supported: the partitioning "
                         "migration reads the data it moves")
    connection = context.config.attributes.get("connection")
    if connection is None and context.config.config_file_name:
        fileConfig(context.config.config_file_name, disable_existing_loggers=False)
    if connection is not None:
        run(connection)
        return
    url = os.environ.get("DATABASE_URL") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set DATABASE_URL (or sqlalchemy.url in alembic.ini)")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        run(conn)


main()
