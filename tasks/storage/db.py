"""The SQLAlchemy engine of this process, configured once from settings."""

from __future__ import annotations

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

_engines: dict[str, Engine] = {}
_current: Engine | None = None


class DatabaseNotConfigured(RuntimeError):
    pass


def configure(url: str) -> Engine:
    """Make the engine for `url` this process's engine (one engine per URL)."""
    global _current
    engine = _engines.get(url)
    if engine is None:
        engine = create_engine(
            url,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=10,
            connect_args={"connect_timeout": 5, "application_name": "marketing-pipeline"},
        )
        _engines[url] = engine
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
