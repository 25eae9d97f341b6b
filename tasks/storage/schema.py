"""PostgreSQL tables: one per data type (derived from its declaration) plus the job store."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.engine import Engine
from sqlalchemy.types import TypeEngine

from tasks.datatypes import (
    BOOLEAN,
    DATA_TYPES,
    DATE,
    DATETIME,
    DECIMAL,
    INTEGER,
    JSON,
    TEXT,
    DataType,
)

metadata = MetaData()

SQL_TYPES: dict[str, type[TypeEngine] | TypeEngine] = {
    TEXT: Text(),
    INTEGER: BigInteger(),
    DECIMAL: Numeric(),
    DATE: Date(),
    DATETIME: DateTime(timezone=True),
    BOOLEAN: Boolean(),
    JSON: JSONB(),
}

jobs_table = Table(
    "pipeline_jobs",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("kind", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("data_type", Text, nullable=False),
    Column("source", Text),
    Column("options", JSONB, nullable=False, server_default="{}"),
    Column("stages", JSONB, nullable=False),
    Column("records_count", Integer, nullable=False),
    Column("result", JSONB),
    Column("error", JSONB),
    Column("progress", JSONB),
    Column("idempotency_key", Text, unique=True),
    Column("request_hash", Text),
    Column("enqueue_count", Integer, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_pipeline_jobs_status_updated", "status", "updated_at"),
    Index("ix_pipeline_jobs_created", "created_at"),
)

# Claim check: each stage reads its input and writes its output here, in chunks, so the
# broker only ever carries a job id.
payloads_table = Table(
    "pipeline_payloads",
    metadata,
    Column(
        "job_id", UUID(as_uuid=False),
        ForeignKey("pipeline_jobs.id", ondelete="CASCADE"), primary_key=True,
    ),
    Column("name", Text, primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("record_count", Integer, nullable=False),
    Column("body", LargeBinary, nullable=False),
)

# Quarantine: every record a stage refused, with its reasons and the record as it came.
rejected_table = Table(
    "pipeline_rejected",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column(
        "job_id", UUID(as_uuid=False),
        ForeignKey("pipeline_jobs.id", ondelete="CASCADE"), nullable=False,
    ),
    Column("stage", Text, nullable=False),
    Column("record_index", Integer, nullable=False),
    Column("record", JSONB, nullable=False),
    Column("reasons", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("replayed_by", UUID(as_uuid=False)),
    Index("ix_pipeline_rejected_job", "job_id", "id"),
)


def _data_table(data_type: DataType) -> Table:
    columns = [Column("id", BigInteger, Identity(), primary_key=True)]
    columns += [
        Column(name, SQL_TYPES[kind]) for name, kind in data_type.all_columns.items()
    ]
    key_index = Index(
        f"uq_{data_type.table_name}_natural_key",
        *data_type.natural_key,
        unique=True,
        # The seed's records carry no date or account: NULL keys must still match.
        postgresql_nulls_not_distinct=True,
    )
    indexes = [key_index]
    if data_type.date_column:
        indexes.append(Index(f"ix_{data_type.table_name}_date", data_type.date_column))
    return Table(data_type.table_name, metadata, *columns, *indexes)


DATA_TABLES: dict[str, Table] = {name: _data_table(dt) for name, dt in DATA_TYPES.items()}


def create_schema(engine: Engine) -> None:
    """Create every table and index that does not exist yet."""
    with engine.begin() as conn:
        # Serialise concurrent starters (API and worker booting together).
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727274)")
        metadata.create_all(conn)
