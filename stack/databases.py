"""Fresh databases for tests and benchmarks, on the server of a given URL."""

from __future__ import annotations

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
