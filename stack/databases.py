"""Fresh databases for tests and benchmarks, on the server of a given URL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url


def create_database(server_url: str, name: str) -> str:
    """Drop and create database `name` on the server of `server_url`; returns its URL."""
    if not (name.isidentifier() and name.islower()):
        raise ValueError(f"database name must be a plain lowercase identifier: {name!r}")
    import psycopg2

    url = make_url(server_url)
    params: dict[str, Any] = {"dbname": "postgres", "user": url.username or "postgres"}
    if url.password:
        params["password"] = url.password
    host = url.host or url.query.get("host")
    if host:
        params["host"] = host
    if url.port or url.query.get("port"):
        params["port"] = url.port or url.query.get("port")
    conn = psycopg2.connect(**params)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')  # checked plain name
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return url.set(database=name).render_as_string(hide_password=False)


@contextmanager
def scratch_services(private_folder: Path, database: str) -> Iterator[dict[str, str]]:
    """DATABASE_URL (a fresh database `database`) and CELERY_BROKER_URL for tests and
    benchmarks: the servers the environment names, or else private ones started under
    `private_folder` and stopped afterwards."""
    database_url = os.environ.get("DATABASE_URL")
    broker_url = os.environ.get("CELERY_BROKER_URL")
    private = None
    if not (database_url and broker_url):
        from stack.embedded import EmbeddedServers

        private = EmbeddedServers(private_folder)
        private.start()
        database_url, broker_url = private.database_url, private.broker_url
    try:
        yield {"DATABASE_URL": create_database(database_url, database),
               "CELERY_BROKER_URL": broker_url}
    finally:
        if private is not None:
            private.stop()
