"""A raw 4-task no-op Celery chain: the floor our 1-record job latency is compared with."""

from __future__ import annotations

import os

from celery import Celery


def _backend(broker: str) -> str:
    # The redis result backend spells a Unix socket as socket:// (the broker: redis+socket://).
    return broker.replace("redis+socket://", "socket://", 1)


broker_url = os.environ["CELERY_BROKER_URL"]
app = Celery("noop", broker=broker_url, backend=_backend(broker_url))
app.conf.update(
    broker_read_url=broker_url, broker_write_url=broker_url,
    task_serializer="json", accept_content=["json"], result_serializer="json",
    task_default_queue="noop", worker_prefetch_multiplier=1, task_acks_late=True,
)


@app.task(name="noop.step")
def step(index: int) -> int:
    return index
