"""The Celery application: JSON only, late acks, one queue per kind of work."""

from __future__ import annotations

from celery import Celery
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_process_shutdown,
)

from tasks import logs, stats
from tasks.settings import Settings
from tasks.storage import db

# Stable task names: other code bases can `send_task` these.
TASK_NAMES = {
    "ingest": "ingestion.ingest",
    "validate": "validation.validate",
    "process": "processing.process",
    "store": "storage.store",
}
PIPELINE_STAGES = ("ingest", "validate", "process", "store")
# How often the raw batches of jobs past their retention are deleted.
RETENTION_SWEEP_SECONDS = 600.0
CPU_QUEUE = "pipeline"
STORE_QUEUE = "store"
TASK_MODULES = (
    "tasks.ingestion.tasks",
    "tasks.validation.tasks",
    "tasks.processing.tasks",
    "tasks.storage.tasks",
    "tasks.maintenance",
)


def celery_config(settings: Settings) -> dict:
    """Celery settings; the README explains each choice."""
    return {
        "broker_url": settings.broker_url,
        # Celery lets a CELERY_BROKER_URL in the environment override broker_url; the
        # read/write URLs make these settings the only source, as for every other value.
        "broker_read_url": settings.broker_url,
        "broker_write_url": settings.broker_url,
        "result_backend": settings.result_backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # Stages are idempotent: ack after the work, and redeliver if the worker dies.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # Longer than the longest stage, so a slow task is not delivered twice.
        "broker_transport_options": {"visibility_timeout": 3600},
        "task_soft_time_limit": 1500,
        "task_time_limit": 1800,
        "task_ignore_result": settings.result_backend is None,
        "task_default_queue": CPU_QUEUE,
        "task_routes": {"storage.*": {"queue": STORE_QUEUE}},
        # Off unless asked for: Flower turns them on in the workers it watches (its
        # enable_events option, on by default), so they cost only while someone looks.
        "worker_send_task_events": settings.task_events,
        "task_track_started": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 5,
        # A broker that is down must not hold an HTTP request for long: the job is already
        # durable and the recovery sweep sends it later.
        "task_publish_retry_policy": {
            "max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1,
        },
        "worker_hijack_root_logger": False,
        "pipeline_stale_job_seconds": settings.stale_job_seconds,
        "pipeline_max_stage_restarts": settings.max_stage_restarts,
        "pipeline_raw_retention_hours": settings.raw_retention_hours,
        "pipeline_progress_event_min_records": settings.progress_event_min_records,
        "beat_schedule": {
            "recover-stale-jobs": {
                "task": "maintenance.recover_stale_jobs",
                "schedule": settings.sweep_interval_seconds,
            },
            "expire-raw-batches": {
                "task": "maintenance.expire_raw_batches",
                "schedule": RETENTION_SWEEP_SECONDS,
            },
        },
    }


def make_celery(settings: Settings, task_cls: str | type = "celery.app.task:Task") -> Celery:
    """A Celery app for `settings`; also configures this process's database engine."""
    if settings.database_url:
        db.configure(settings.database_url)
    logs.celery_task_lines(settings.task_log_lines)
    app = Celery("pipeline", task_cls=task_cls, include=list(TASK_MODULES))
    app.conf.update(celery_config(settings))
    return app


@worker_process_init.connect
def _fresh_connections_per_child(**_: object) -> None:
    db.dispose_after_fork()
    db.use_for_worker()


@worker_process_shutdown.connect
def _count_the_last_stages(**_: object) -> None:
    stats.flush()


STAGE_OF_TASK = {name: stage for stage, name in TASK_NAMES.items()}
_log_tokens: dict[str, object] = {}


@task_prerun.connect
def _bind_job_to_logs(task_id: str, task: object, args: tuple = (), **_: object) -> None:
    """Every log line of a stage task names its job (the first argument) and stage."""
    stage = STAGE_OF_TASK.get(getattr(task, "name", ""))
    if stage and args:
        _log_tokens[task_id] = logs.bind(str(args[0]), stage, task_id)


@task_postrun.connect
def _unbind_job_from_logs(task_id: str, **_: object) -> None:
    token = _log_tokens.pop(task_id, None)
    if token is not None:
        logs.unbind(token)


@after_setup_logger.connect
@after_setup_task_logger.connect
def _format_worker_logs(logger: object, **_: object) -> None:
    """The worker's handlers get the API's format: JSON lines with LOG_FORMAT=json."""
    logs.install(logger)  # type: ignore[arg-type]
