"""Settings: named values with typed parsers and clear fallbacks, read from the environment.

Read by `Settings.from_env()` when an app or worker is built, never at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


class SettingsError(ValueError):
    """A setting with a value that cannot be used; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


def _hours_or_off(env: Mapping[str, str], name: str, default: float) -> float | None:
    """A number of hours (at least 0), or None for `off`."""
    raw = env.get(name, "").strip().lower()
    if raw == "off":
        return None
    value = _float(env, name, default)
    if value < 0:
        raise SettingsError(f"{name} must be a number of hours or 'off', got {raw!r}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"{name} must be 1 or 0 (true/false, yes/no, on/off), got {raw!r}")


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


def _optional(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    broker_url: str | None = None
    result_backend: str | None = None
    api_keys: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 5000
    # Limits on every input: bytes of one request body, records in one request.
    max_body_bytes: int = 256 * 1024 * 1024
    max_records: int = 1_000_000
    # Streamed file uploads (CSV, NDJSON) are held one chunk at a time: larger limits.
    max_file_bytes: int = 4 * 1024**3
    max_file_records: int = 50_000_000
    # Records per stored chunk of a batch; bounds a worker's memory per step.
    chunk_records: int = 10_000
    # A job queued, or a stage running, this long without a heartbeat is presumed lost:
    # the recovery sweep (run every sweep_interval_seconds) sends it again.
    stale_job_seconds: float = 120.0
    sweep_interval_seconds: float = 30.0
    # A stage whose message comes back this many times after its worker died fails its
    # job rather than loop (a record that crashes the worker process does that).
    max_stage_restarts: int = 5
    # Raw batches of finished jobs are deleted this long after the job finished (None:
    # kept for ever). Nothing reads them then; kept, they grow with every upload.
    raw_retention_hours: float | None = 168.0
    log_json: bool = False
    # Stages with fewer input records send no Celery PROGRESS events (the job row still
    # has its progress): for a few records they only add latency.
    progress_event_min_records: int = 1000
    # Celery task events from the start (else only while Flower, or `celery control
    # enable_events`, asks for them): about 3 publishes per task, a tenth of a short job.
    task_events: bool = False
    # Celery's own "received" and "succeeded" line for every task. Our stage lines say
    # the same with the job named; off, a one-record job writes 5 lines instead of 16
    # and spends 5-10 % less CPU.
    task_log_lines: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            database_url=_optional(env, "DATABASE_URL"),
            broker_url=_optional(env, "CELERY_BROKER_URL"),
            result_backend=_optional(env, "CELERY_RESULT_BACKEND"),
            api_keys=_list(env, "API_KEYS"),
            host=env.get("HOST", "").strip() or "127.0.0.1",
            port=_int(env, "PORT", 5000, minimum=1),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 256 * 1024 * 1024, minimum=1024),
            max_records=_int(env, "MAX_RECORDS_PER_REQUEST", 1_000_000, minimum=1),
            max_file_bytes=_int(env, "MAX_FILE_BYTES", 4 * 1024**3, minimum=1024),
            max_file_records=_int(env, "MAX_FILE_RECORDS", 50_000_000, minimum=1),
            chunk_records=_int(env, "CHUNK_RECORDS", 10_000, minimum=100),
            stale_job_seconds=_float(env, "STALE_JOB_SECONDS", 120.0),
            sweep_interval_seconds=_float(env, "RECOVERY_SWEEP_SECONDS", 30.0),
            max_stage_restarts=_int(env, "MAX_STAGE_RESTARTS", 5, minimum=1),
            raw_retention_hours=_hours_or_off(env, "RAW_RETENTION_HOURS", 168.0),
            log_json=env.get("LOG_FORMAT", "").strip().lower() == "json",
            progress_event_min_records=_int(env, "PROGRESS_EVENT_MIN_RECORDS", 1000),
            task_events=_flag(env, "TASK_EVENTS"),
            task_log_lines=_flag(env, "TASK_LOG_LINES"),
        )

    def require_services(self) -> None:
        """Fail with one clear line when the service URLs are missing."""
        missing = [
            name
            for name, value in (
                ("DATABASE_URL", self.database_url),
                ("CELERY_BROKER_URL", self.broker_url),
            )
            if not value
        ]
        if missing:
            raise SettingsError(
                f"{' and '.join(missing)} not set; `make run` starts private servers for you"
            )
