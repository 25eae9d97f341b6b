"""Fail fast, in one line, when a configured server cannot be reached."""

from __future__ import annotations

from sqlalchemy.engine import make_url


class Unreachable(RuntimeError):
    """One line naming the server, the variable and the reason."""


def _where_db(url: str) -> str:
    parsed = make_url(url)
    host = parsed.host or parsed.query.get("host") or "local socket"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{host}{port}/{parsed.database or ''}"


def check_database(url: str, timeout: int = 3) -> None:
    import psycopg2
    from sqlalchemy import create_engine

    engine = create_engine(url, connect_args={"connect_timeout": timeout}, poolclass=None)
    try:
        with engine.connect():
            pass
    except Exception as exc:
        reason = getattr(exc, "orig", exc)
        if isinstance(reason, psycopg2.Error):
            reason = str(reason).strip().splitlines()[0]
        raise Unreachable(
            f"cannot reach PostgreSQL at {_where_db(url)} (DATABASE_URL): {reason}") from None
    finally:
        engine.dispose()


def check_broker(url: str, timeout: float = 3.0) -> None:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2,
                                   timeout=timeout)
    except Exception as exc:
        where = url.split("@")[-1]  # never print a password
        raise Unreachable(
            f"cannot reach the broker at {where} (CELERY_BROKER_URL): {exc}") from None
