"""`make run`, `make api` and `make worker` fail fast and clearly on an unreachable server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOOD_DB = "postgresql+psycopg2://postgres@127.0.0.1:1/nothing"


def launch(command: str, env: dict[str, str]) -> tuple[int, str, float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "stack", command], cwd=ROOT, capture_output=True, text=True,
        timeout=60, env={**os.environ, **env},
    )
    return result.returncode, result.stderr.strip(), time.monotonic() - started


@pytest.mark.parametrize("command", ["run", "api", "worker"])
def test_unreachable_database_is_one_line_and_fast(command, service_env):
    code, stderr, seconds = launch(command, {
        "DATABASE_URL": "postgresql+psycopg2://postgres@127.0.0.1:1/pipeline",
        "CELERY_BROKER_URL": service_env["CELERY_BROKER_URL"],
    })
    assert code == 2
    assert stderr.count("\n") == 0, stderr
    assert stderr.startswith("error: cannot reach PostgreSQL at 127.0.0.1:1/pipeline "
                             "(DATABASE_URL)")
    assert "Traceback" not in stderr
    assert seconds < 15


@pytest.mark.parametrize("command", ["run", "api", "worker"])
def test_unreachable_broker_is_one_line_and_fast(command, service_env):
    code, stderr, seconds = launch(command, {
        "DATABASE_URL": service_env["DATABASE_URL"],
        "CELERY_BROKER_URL": "redis://:secret@127.0.0.1:1/0",
    })
    assert code == 2
    assert stderr.count("\n") == 0, stderr
    assert stderr.startswith("error: cannot reach the broker at 127.0.0.1:1/0 (CELERY_BROKER_URL)")
    assert "secret" not in stderr
    assert seconds < 15


def test_only_one_of_the_two_urls_is_a_clear_error():
    env = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"}
    result = subprocess.run([sys.executable, "-m", "stack", "api"], cwd=ROOT, env={
        **env, "DATABASE_URL": GOOD_DB}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "CELERY_BROKER_URL is not set" in result.stderr
