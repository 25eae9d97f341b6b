"""The SQLAlchemy engine of this process, configured once from settings."""

from __future__ import annotations

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

_engines: dict[str, Engine] = {}
_current: Engine | None = None


class DatabaseNotConfigured(RuntimeError):
    pass


def configure(url: str, pre_ping: bool = True) -> Engine:
    """Make the engine for `url` this process's engine (one engine per URL and mode).

    Workers use `pre_ping=False`: a connection lost to a database restart fails the
    stage with an OperationalError, which is retried anyway, so the extra round trip
    on every checkout buys nothing there. The API keeps it: a request must not fail.
    """
    global _current
    key = f"{url}#ping" if pre_ping else url
    engine = _engines.get(key)
    if engine is None:
        engine = create_engine(
            url,
            pool_pre_ping=pre_ping,
            pool_size=5,
            max_overflow=10,
            connect_args={"connect_timeout": 5, "application_name": "marketing-pipeline"},
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


def use_without_ping() -> None:
    """Switch this process (a worker child) to an engine without pre-ping."""
    if _current is not None:
        configure(_current.url.render_as_string(hide_password=False), pre_ping=False)
