"""A raw 4-task no-op Celery chain: the floor our 1-record job latency is compared with."""

from __future__ import annotations

import os

from celery import Celery

# The broker's URL serves as the result backend's too: Celery reads redis+socket:// as the
# redis backend on a Unix socket (a bare socket:// names no backend).
broker_url = os.environ["CELERY_BROKER_URL"]
app = Celery("noop", broker=broker_url, backend=broker_url)
app.conf.update(
    broker_read_url=broker_url, broker_write_url=broker_url,
    task_serializer="json", accept_content=["json"], result_serializer="json",
    task_default_queue="noop", worker_prefetch_multiplier=1, task_acks_late=True,
)


@app.task(name="noop.step")
def step(index: int) -> int:
    return index
