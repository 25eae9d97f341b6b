"""Alembic, driven from code: upgrade to head on start, or tell in one line why not.

`make migrate` and app start both end here (through schema.create_schema). The
`alembic` command line works too, with alembic.ini at the project root.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection, Engine

from tasks.storage.schema import PARTITIONED_TYPES, SchemaError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Held for a whole upgrade, so concurrent starters run it one at a time (env.py takes it).
MIGRATION_LOCK = 727274
# Monthly and default partitions are made at run time, not declared in the metadata.
PARTITION_NAME = re.compile(
    rf"^({'|'.join(sorted(PARTITIONED_TYPES))})_p(\d{{6}}|default)$")


def include_object(obj: Any, name: str | None, type_: str, reflected: bool,
                   compare_to: Any) -> bool:
    """Compare only what the metadata declares: partitions are made at run time, and a
    table this code does not know (another tool's) is never proposed for dropping."""
    if type_ == "table" and reflected and (compare_to is None or PARTITION_NAME.match(name or "")):
        return False
    table = getattr(obj, "table", None)
    return not (type_ == "index" and reflected and table is not None
                and PARTITION_NAME.match(table.name))


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Upgrade the database to head in one transaction under the migration lock."""
    head = head_revision()
    with engine.begin() as conn:
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        current = current_revision(conn)
        if current == head:
            return
        _require_known(current)
        try:
            command.upgrade(alembic_config(conn), "head")
        except CommandError as exc:
            raise SchemaError(f"database schema migration failed: {exc}") from None


def check_current(engine: Engine) -> None:
    """Raise SchemaError unless the database is at head (for processes that do not migrate)."""
    head = head_revision()
    with engine.connect() as conn:
        current = current_revision(conn)
    _require_known(current)
    if current != head:
        raise SchemaError(
            f"database schema is at revision {current or 'none'}, this code needs {head}: "
            "run `make migrate`")


def _require_known(current: str | None) -> None:
    if current is None:
        return
    script = ScriptDirectory.from_config(alembic_config())
    try:
        script.get_revision(current)
    except CommandError:
        raise SchemaError(
            f"database schema is at revision {current}, unknown to this code "
            f"(head {head_revision()}): was it migrated by a newer version?") from None
