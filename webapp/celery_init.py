"""Celery wired through the Flask app, as in pallets/flask examples/celery."""

from __future__ import annotations

from celery import Celery, Task
from flask import Flask

from tasks.celery_app import make_celery
from tasks.settings import Settings


def celery_init_app(app: Flask, settings: Settings) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = make_celery(settings, task_cls=FlaskTask)
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app
