"""Log lines for the API and the workers: JSON lines (LOG_FORMAT=json) or plain text, and the
job id, stage and task id on every line logged while a stage runs.

The job context lives in a contextvar set around each stage task (the task_prerun and
task_postrun hooks in tasks/celery_app.py), so lines from the stage code, the Celery
machinery and any library in between all carry it without passing it along. Threads a stage
starts do not inherit it (Python copies no context into a new thread).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from tasks import jsontext

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s%(job_context)s: %(message)s"
# Attributes every LogRecord has; anything else on a record came as `extra=` and is kept.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "job_context", "job_id", "stage", "task_id"}

_context: ContextVar[dict[str, str] | None] = ContextVar("pipeline_job_context", default=None)
_json_mode = False


def _fields(job_id: str, stage: str | None, task_id: str | None) -> dict[str, str]:
    fields = {"job_id": job_id}
    if stage:
        fields["stage"] = stage
    if task_id:
        fields["task_id"] = task_id
    return fields


def bind(job_id: str, stage: str | None = None, task_id: str | None = None) -> object:
    """Set the job context without a block (for signal pairs); give the result to `unbind`."""
    return _context.set(_fields(job_id, stage, task_id))


def unbind(token: object) -> None:
    try:
        _context.reset(token)  # type: ignore[arg-type]
    except (ValueError, TypeError):  # set in another context: clear rather than fail
        _context.set(None)


@contextmanager
def job_context(job_id: str, stage: str | None = None,
                task_id: str | None = None) -> Iterator[None]:
    """Within the block, every log line of this thread (or task) names the job."""
    token = bind(job_id, stage, task_id)
    try:
        yield
    finally:
        unbind(token)


def current() -> dict[str, str]:
    """The job context of this thread or task ({} outside a stage)."""
    return dict(_context.get() or {})


class JobContextFilter(logging.Filter):
    """Puts job_id, stage and task_id on the record (None outside a stage), and a ready-made
    ` [job=... stage=...]` for the plain format."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get() or {}
        for key in ("job_id", "stage", "task_id"):
            if getattr(record, key, None) is None:  # an explicit extra= wins
                setattr(record, key, context.get(key))
        record.job_context = ""
        if record.job_id:  # type: ignore[attr-defined]
            stage = f" stage={record.stage}" if record.stage else ""  # type: ignore[attr-defined]
            record.job_context = f" [job={record.job_id}{stage}]"  # type: ignore[attr-defined]
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, process, the job context,
    any `extra=` fields, and the traceback of an exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for key in ("job_id", "stage", "task_id"):
            value = getattr(record, key, None)
            if value is None:
                value = (_context.get() or {}).get(key)
            if value is not None:
                line[key] = value
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc_info"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = record.stack_info
        return jsontext.dumps(line, default=str).decode()


def formatter(json_lines: bool) -> logging.Formatter:
    return JsonFormatter() if json_lines else logging.Formatter(PLAIN_FORMAT)


def install(logger: logging.Logger, json_lines: bool | None = None) -> None:
    """Give every handler of `logger` the job context filter and the chosen format."""
    json_lines = _json_mode if json_lines is None else json_lines
    for handler in logger.handlers:
        if not any(isinstance(f, JobContextFilter) for f in handler.filters):
            handler.addFilter(JobContextFilter())
        handler.setFormatter(formatter(json_lines))


def configure_logging(json_lines: bool, level: int = logging.INFO) -> None:
    """Set up the root logger of this process (API or worker); safe to call again."""
    global _json_mode
    _json_mode = json_lines
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
    install(root, json_lines)


# Where Celery logs, at INFO, each task it receives and each task that succeeds (failures
# are logged at ERROR and stay).
CELERY_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


def celery_task_lines(on: bool) -> None:
    """Celery's per-task INFO lines on or off in this process. Celery reads the level
    once, when the worker starts, and then skips even building an unwanted line."""
    for name in CELERY_TASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if on else logging.WARNING)


def json_mode() -> bool:
    """The format chosen by the last `configure_logging` of this process."""
    return _json_mode
