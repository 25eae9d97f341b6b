"""The SQLAlchemy engine of this process, configured once from settings."""

from __future__ import annotations

from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine

_engines: dict[str, Engine] = {}
_current: Engine | None = None


class DatabaseNotConfigured(RuntimeError):
    pass


def configure(url: str, pre_ping: bool = True, relaxed_commit: bool = False) -> Engine:
    """Make the engine for `url` this process's engine (one engine per URL and mode).

    Workers use `pre_ping=False`: a connection lost to a database restart fails the
    stage with an OperationalError, which is retried anyway, so the extra round trip
    on every checkout buys nothing there. The API keeps it: a request must not fail.

    `relaxed_commit` (workers): commits do not wait for the WAL flush. What a worker
    commits is a claim, a heartbeat or an intermediate output, all redone from the
    durable raw batch if PostgreSQL crashes; the store stage's final commit turns it
    back on (`durable_commit`). Acceptance in the API always commits durably.
    """
    global _current
    key = f"{url}#{'ping' if pre_ping else ''}#{'relaxed' if relaxed_commit else ''}"
    engine = _engines.get(key)
    if engine is None:
        connect_args: dict[str, object] = {
            "connect_timeout": 5, "application_name": "marketing-pipeline"}
        if relaxed_commit:
            # A worker that froze mid-stage (its host hung, not its connection closed)
            # must not hold a job row for ever: the server ends a transaction left idle
            # for 5 minutes (no stage step idles that long between two statements), and
            # TCP keepalives notice a peer that is gone.
            connect_args["options"] = ("-c synchronous_commit=off"
                                       " -c idle_in_transaction_session_timeout=300000")
            connect_args.update(keepalives=1, keepalives_idle=30, keepalives_interval=10,
                                keepalives_count=3)
        engine = create_engine(
            url,
            pool_pre_ping=pre_ping,
            pool_size=5,
            max_overflow=10,
            connect_args=connect_args,
        )
        _engines[key] = engine
    _current = engine
    return engine


def get_engine() -> Engine:
    if _current is None:
        raise DatabaseNotConfigured("no database configured: call tasks.storage.db.configure(url)")
    return _current


def dispose_after_fork() -> None:
    """Drop connections inherited from a parent process; each child opens its own."""
    for engine in _engines.values():
        engine.dispose(close=False)


def use_for_worker() -> None:
    """Switch this process (a worker child) to the worker engine: no pre-ping, relaxed
    commits (see `configure`)."""
    if _current is not None:
        configure(_current.url.render_as_string(hide_password=False), pre_ping=False,
                  relaxed_commit=True)


def durable_commit(conn: Connection) -> None:
    """This transaction's commit waits for the WAL flush, whatever the session default."""
    conn.exec_driver_sql("SET LOCAL synchronous_commit = on")
