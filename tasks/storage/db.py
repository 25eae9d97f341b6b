"""The SQLAlchemy engine of this process, configured once from settings."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError

from tasks import jsontext

_engines: dict[str, Engine] = {}
_autocommit: dict[int, Engine] = {}
# The arguments each engine was made with, so that its autocommit twin matches it.
_made_with: dict[int, tuple[str, bool, bool]] = {}
_current: Engine | None = None

# A connection taken from the pool within this long of its last use is not pinged first:
# under load that round trip was a tenth of a short request. A server restart takes
# longer than this, and a request that still meets a dead connection gets a 503
# (webapp/errors.py), after which the pool holds only new connections.
PING_IDLE_SECONDS = 1.0
# No statement of a worker waits longer (a lock held for ever, say): under the stage
# task's soft time limit (25 min), so the stage sees an error it can act on instead of
# being killed by the hard limit mid-statement, again each time the sweep sends it.
WORKER_STATEMENT_SECONDS = 1200


class DatabaseNotConfigured(RuntimeError):
    pass


def json_text(value: Any) -> str:
    """A JSON column's value as text, with orjson: the job row's stages (a validation
    report of kilobytes) are written at every stage and read at every poll, and the
    standard library took four times as long. Any depth, and no type beyond JSON's and
    orjson's own (a Decimal fails, as it did with the standard library)."""
    return jsontext.dumps(value, default=None, non_str_keys=True, any_depth=True).decode()


def json_value(text: str) -> Any:
    """A JSON column's text as Python values (integers wider than 64 bits exact)."""
    return jsontext.loads(text)


def configure(url: str, pre_ping: bool = True, relaxed_commit: bool = False) -> Engine:
    """Make the engine for `url` this process's engine (one engine per URL and mode).

    `pre_ping`: a connection idle for PING_IDLE_SECONDS or more is pinged when taken
    from the pool, and replaced if the server dropped it (the API). Workers use
    `pre_ping=False`: a connection lost to a database restart fails the stage with an
    OperationalError, which is retried anyway, so a ping buys nothing there.

    `relaxed_commit` (workers): commits do not wait for the WAL flush. What a worker
    commits is a claim, a heartbeat or an intermediate output, all redone from the
    durable raw batch if PostgreSQL crashes; the store stage's final commit turns it
    back on (`durable_commit`). Acceptance in the API always commits durably.
    """
    global _current
    key = f"{url}#{'ping' if pre_ping else ''}#{'relaxed' if relaxed_commit else ''}"
    engine = _engines.get(key)
    if engine is None:
        engine = _engines[key] = _create(url, pre_ping, relaxed_commit)
        _made_with[id(engine)] = (url, pre_ping, relaxed_commit)
    _current = engine
    return engine


def _create(url: str, pre_ping: bool, relaxed_commit: bool, **options: Any) -> Engine:
    """A new engine and pool (see `configure` for the modes)."""
    # UTF-8 whatever the server's encoding: binary COPY sends text as UTF-8 bytes.
    connect_args: dict[str, object] = {
        "connect_timeout": 5, "application_name": "marketing-pipeline",
        "client_encoding": "utf8"}
    if relaxed_commit:
        # A worker that froze mid-stage (its host hung, not its connection closed)
        # must not hold a job row for ever: the server ends a transaction left idle
        # for 5 minutes (no stage step idles that long between two statements), and
        # TCP keepalives notice a peer that is gone. No statement runs past
        # WORKER_STATEMENT_SECONDS.
        connect_args["options"] = ("-c synchronous_commit=off"
                                   " -c idle_in_transaction_session_timeout=300000"
                                   f" -c statement_timeout={WORKER_STATEMENT_SECONDS * 1000}")
        connect_args.update(keepalives=1, keepalives_idle=30, keepalives_interval=10,
                            keepalives_count=3)
    engine = create_engine(url, pool_size=5, max_overflow=10, connect_args=connect_args,
                           json_serializer=json_text, json_deserializer=json_value, **options)
    if pre_ping:
        _ping_idle_connections(engine)
    return engine


def _ping_idle_connections(engine: Engine) -> None:
    """SQLAlchemy's pre-ping, for connections that have been idle a while only."""

    @event.listens_for(engine.pool, "connect")
    @event.listens_for(engine.pool, "checkin")
    def _idle_from_now(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is not None and time.monotonic() - idle_since < PING_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the pool replaces the connection and tries again
            raise DisconnectionError(f"connection lost while idle: {exc}") from exc


def get_engine() -> Engine:
    if _current is None:
        raise DatabaseNotConfigured("no database configured: call tasks.storage.db.configure(url)")
    return _current


def autocommit_engine() -> Engine:
    """This process's engine in autocommit mode, for reads of one statement: no BEGIN
    before it and no ROLLBACK after it (two of a job poll's four round trips).

    A pool of its own: a connection switched to autocommit and back for one read costs
    a `SET default_transaction_isolation` when it returns to the pool, and a
    `BEGIN ISOLATION LEVEL` on its next transaction."""
    engine = get_engine()
    reader = _autocommit.get(id(engine))
    if reader is None:
        url, pre_ping, relaxed_commit = _made_with[id(engine)]
        reader = _autocommit[id(engine)] = _create(url, pre_ping, relaxed_commit,
                                                   isolation_level="AUTOCOMMIT")
    return reader


def dispose_after_fork() -> None:
    """Drop connections inherited from a parent process; each child opens its own."""
    for engine in (*_engines.values(), *_autocommit.values()):
        engine.dispose(close=False)


def use_for_worker() -> None:
    """Switch this process (a worker child) to the worker engine: no pre-ping, relaxed
    commits (see `configure`)."""
    if _current is not None:
        configure(_current.url.render_as_string(hide_password=False), pre_ping=False,
                  relaxed_commit=True)


@contextmanager
def raw_cursor(conn: Connection) -> Iterator[Any]:
    """A DBAPI cursor in `conn`'s transaction, for what SQLAlchemy has no call for (COPY).
    Its errors arrive as SQLAlchemy's, as every other statement's do: the stage runner
    retries an OperationalError and fails the job on anything else."""
    dbapi = conn.dialect.loaded_dbapi
    connection = conn.connection.dbapi_connection
    cursor = None
    try:
        cursor = connection.cursor()
        yield cursor
    except dbapi.Error as exc:
        lost = conn.dialect.is_disconnect(exc, connection, cursor)
        if lost:  # out of the pool, and the transaction's rollback is not tried on it
            conn.invalidate(exc)
        raise DBAPIError.instance(None, None, exc, dbapi.Error, dialect=conn.dialect,
                                  connection_invalidated=lost) from exc
    finally:
        if cursor is not None and not cursor.closed:
            cursor.close()


def durable_commit(conn: Connection) -> None:
    """This transaction's commit waits for the WAL flush, whatever the session default."""
    conn.exec_driver_sql("SET LOCAL synchronous_commit = on")
