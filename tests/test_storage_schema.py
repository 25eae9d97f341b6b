"""Schema by migrations, monthly partitions made as data arrives, and the refusal of an
old schema."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from psycopg2.errors import LockNotAvailable
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError

from tasks.datatypes import CAMPAIGN_PERFORMANCE
from tasks.stage import StageFailure
from tasks.storage import partitions
from tasks.storage.core import store
from tasks.storage.migrate import alembic_config, head_revision, include_object
from tasks.storage.schema import (
    PARTITIONED_TYPES,
    SchemaError,
    create_schema,
    metadata,
    require_current_schema,
)
from tests.test_storage_upsert import store_rows


def _record(campaign: str, day: str | None) -> dict:
    return {"source": "meta_ads", "account_id": "acc", "campaign_id": campaign, "date": day,
            "spend": "1", "impressions": 10, "clicks": 1}


def _placement(engine: Engine) -> dict[str, str]:
    """campaign_id -> the partition its row is stored in."""
    with engine.connect() as conn:
        return dict(conn.execute(text(
            "SELECT campaign_id, tableoid::regclass::text FROM campaign_performance")).all())


def _schema_diff(engine: Engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"include_object": include_object, "compare_type": True})
        return compare_metadata(context, metadata)


@pytest.fixture
def scratch_engine(service_env) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    """An empty database of its own on the test server, dropped afterwards."""
    url = make_url(service_env["DATABASE_URL"])
    name = f"{url.database}_migrations"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    quoted = '"' + name.replace('"', '""') + '"'  # derived from the test database's name
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {quoted}"))
    engine = create_engine(url.set(database=name))
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
    admin.dispose()


def test_the_app_database_is_at_head_and_matches_the_declarations(engine):
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() \
            == head_revision()
    diff = _schema_diff(engine)
    assert diff == [], f"declarations and migrations differ; add a migration: {diff}"


def test_fact_tables_are_partitioned_by_month_with_indexes_for_the_common_filters(engine):
    with engine.connect() as conn:
        partitioned = set(conn.execute(text(
            "SELECT c.relname FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid"
            " WHERE p.partstrat = 'r'")).scalars())
        indexes = set(conn.execute(text(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'campaign_performance'"
        )).scalars())
        primary_keys = set(conn.execute(text(
            "SELECT conrelid::regclass::text FROM pg_constraint WHERE contype = 'p'")).scalars())
        default_check = conn.execute(text(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'campaign_performance_pdefault'::regclass AND contype = 'c'"
        )).scalar_one()
    assert partitioned == PARTITIONED_TYPES
    assert {"uq_campaign_performance_natural_key", "ix_campaign_performance_id",
            "ix_campaign_performance_date", "ix_campaign_performance_account_id_date",
            "ix_campaign_performance_campaign_id_date"} <= indexes
    assert not PARTITIONED_TYPES & primary_keys  # id is no primary key there
    assert {"crm_contacts", "crm_deals", "fx_rates", "pipeline_jobs"} <= primary_keys
    assert "date IS NULL" in default_check


@pytest.mark.usefixtures("clean_tables")
def test_store_creates_the_months_a_batch_needs_and_undated_rows_go_to_default(engine):
    result = store_rows(engine, [_record("oct", "2023-10-31"), _record("nov", "2023-11-01"),
                                 _record("far", "2031-07-04"), _record("none", None)])
    assert result["inserted"] == 4
    assert _placement(engine) == {
        "oct": "campaign_performance_p202310", "nov": "campaign_performance_p202311",
        "far": "campaign_performance_p203107", "none": "campaign_performance_pdefault"}
    again = store_rows(engine, [_record("oct", "2023-10-31")])  # nothing new to create
    assert again["updated"] == 1
    assert _schema_diff(engine) == []  # partitions are not drift


@pytest.mark.usefixtures("clean_tables")
def test_concurrent_workers_create_each_month_once(engine):
    months = [f"2032-{m:02d}-15" for m in range(1, 7)]
    workers = 6
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            barrier.wait()
            store_rows(engine, [_record(f"w{n}-{day}", day) for day in months])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with engine.connect() as conn:
        made = partitions.existing_partitions(conn, "campaign_performance")
        count = conn.execute(text("SELECT count(*) FROM campaign_performance")).scalar_one()
    assert {f"campaign_performance_p2032{m:02d}" for m in range(1, 7)} <= made
    assert count == workers * len(months)


@pytest.mark.usefixtures("clean_tables")
def test_a_store_transaction_holding_the_default_partition_still_gets_its_month(engine):
    # A separate DDL session would wait for our own lock on the default partition: the
    # store transaction creates the month itself.
    with engine.begin() as conn:
        store(conn, [_record("undated", None)], CAMPAIGN_PERFORMANCE, None, job_id="j1")
        output = store(conn, [_record("dated", "2033-02-02")], CAMPAIGN_PERFORMANCE, None,
                       job_id="j2")
    assert output.result["inserted"] == 1
    assert _placement(engine)["dated"] == "campaign_performance_p203302"


@pytest.mark.usefixtures("clean_tables")
def test_a_long_reader_of_undated_rows_delays_a_new_month_but_never_stalls(engine, monkeypatch):
    monkeypatch.setattr(partitions, "LOCK_TIMEOUT", "100ms")
    monkeypatch.setattr(partitions, "DDL_ATTEMPTS", 2)
    with engine.connect() as reader:  # e.g. a CSV export reading the undated rows
        reader.execute(text("SELECT count(*) FROM campaign_performance_pdefault"))
        started = time.monotonic()
        with pytest.raises(OperationalError) as timeout:
            store_rows(engine, [_record("late", "2034-05-05")])
        assert isinstance(timeout.value.orig, LockNotAvailable)  # retried by the runner
        assert time.monotonic() - started < 5
        reader.rollback()
    assert store_rows(engine, [_record("late", "2034-05-05")])["inserted"] == 1


@pytest.mark.usefixtures("clean_tables")
def test_a_batch_spanning_too_many_months_fails_clearly(engine, monkeypatch):
    monkeypatch.setattr(partitions, "MAX_NEW_PARTITIONS", 3)
    records = [_record(str(m), date(1990, m, 1).isoformat()) for m in range(1, 6)]
    with pytest.raises(StageFailure) as failure, engine.begin() as conn:
        store(conn, records, CAMPAIGN_PERFORMANCE, None, job_id=str(uuid.uuid4()))
    assert failure.value.code == "invalid_dates"
    assert "5 new months" in failure.value.message


def test_a_database_made_before_migrations_is_adopted_and_partitioned(scratch_engine):
    with scratch_engine.begin() as conn:  # what the old create_all made, with rows in it
        command.upgrade(alembic_config(conn), "0001")
        conn.execute(text(
            "INSERT INTO campaign_performance (id, source, campaign_id, date, spend) VALUES"
            " (7, 'meta_ads', '123', NULL, 100), (8, 'meta_ads', '123', '2023-10-05', 5),"
            " (9, 'generic', '9', '2024-01-31', 1)"))
        conn.execute(text("DELETE FROM alembic_version"))  # no migrations back then
    create_schema(scratch_engine)
    create_schema(scratch_engine)  # a second start has nothing to do
    with scratch_engine.begin() as conn:
        rows = conn.execute(text(
            "SELECT id, tableoid::regclass::text FROM campaign_performance ORDER BY id")).all()
        new_id = conn.execute(text(
            "INSERT INTO campaign_performance (source, campaign_id) VALUES ('x', 'y')"
            " RETURNING id")).scalar_one()
    assert rows == [(7, "campaign_performance_pdefault"), (8, "campaign_performance_p202310"),
                    (9, "campaign_performance_p202401")]
    assert new_id == 10
    assert _schema_diff(scratch_engine) == []

    with scratch_engine.begin() as conn:  # and back, and forth again, keeping the rows
        command.downgrade(alembic_config(conn), "0001")
    create_schema(scratch_engine)
    with scratch_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM campaign_performance")).scalar_one() == 4


def test_concurrent_starters_migrate_once(scratch_engine):
    errors: list[BaseException] = []

    def start() -> None:
        try:
            create_schema(scratch_engine)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    require_current_schema(scratch_engine)


def test_an_old_or_unknown_schema_is_refused_in_one_line(scratch_engine):
    with scratch_engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001")
    with pytest.raises(SchemaError) as old:
        require_current_schema(scratch_engine)
    assert "run `make migrate`" in str(old.value) and "\n" not in str(old.value)

    with scratch_engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    for check in (create_schema, require_current_schema):
        with pytest.raises(SchemaError) as unknown:
            check(scratch_engine)
        assert "9999" in str(unknown.value) and "\n" not in str(unknown.value)


def test_a_downgrade_past_payload_references_waits_for_unfinished_jobs(scratch_engine):
    """A stage output stored as a reference cannot be turned back into records: the
    downgrade refuses while an unfinished job holds one, and drops a finished job's."""
    create_schema(scratch_engine)
    job_id = str(uuid.uuid4())
    with scratch_engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO pipeline_jobs (id, kind, status, data_type, stages, options,"
            " records_count, created_at, updated_at) VALUES (:id, 'pipeline', 'running',"
            " 'campaign_performance', '[]', '{}', 1, now(), now())"), {"id": job_id})
        conn.execute(text(
            "INSERT INTO pipeline_payloads (job_id, name, seq, record_count, body)"
            " VALUES (:id, 'raw', 0, 1, '[{}]')"), {"id": job_id})
        conn.execute(text(
            "INSERT INTO pipeline_payloads (job_id, name, seq, record_count, same_as,"
            " same_seq, fill) VALUES (:id, 'ingest', 0, 1, 'raw', 0, '{\"source\": \"x\"}')"),
            {"id": job_id})
    for revision in ("0007", "0006"):
        with pytest.raises(Exception, match="unfinished jobs hold stage outputs"):
            with scratch_engine.begin() as conn:
                command.downgrade(alembic_config(conn), revision)
        with scratch_engine.begin() as conn:
            conn.execute(text("UPDATE pipeline_payloads SET fill = NULL"))
    with scratch_engine.begin() as conn:
        conn.execute(text("UPDATE pipeline_jobs SET status = 'succeeded'"))
    with scratch_engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0006")
    with scratch_engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM pipeline_payloads")).scalars().all() \
            == ["raw"]
    create_schema(scratch_engine)
