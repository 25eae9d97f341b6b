"""The Flask app factory."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from tasks.logs import configure_logging
from tasks.settings import Settings
from tasks.storage import db
from tasks.storage.schema import create_schema, require_current_schema
from webapp.celery_init import celery_init_app
from webapp.errors import register_error_handlers
from webapp.jsonio import OrjsonProvider


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app from the environment; `config` overrides (tests pass SETTINGS).

    Creates missing tables on start, so a fresh database works at once.
    """
    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    settings: Settings = (config or {}).get("SETTINGS") or Settings.from_env()
    settings.require_services()
    app.config.update(
        SETTINGS=settings,
        API_KEYS=settings.api_keys,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        MAX_RECORDS=settings.max_records,
        CHUNK_RECORDS=settings.chunk_records,
    )
    app.config.update({k: v for k, v in (config or {}).items() if k != "SETTINGS"})
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configure_logging(settings.log_json)

    engine = db.configure(settings.database_url)  # type: ignore[arg-type]
    if app.config.get("MIGRATE_ON_START", True):
        create_schema(engine)
    else:  # refuse to serve an old schema rather than fail request by request
        require_current_schema(engine)
    celery_init_app(app, settings)
    register_error_handlers(app)

    from webapp.views import health, jobs, pipeline, retrieve

    app.register_blueprint(pipeline.bp)
    app.register_blueprint(retrieve.bp)
    app.register_blueprint(jobs.bp)
    app.register_blueprint(health.bp)

    from webapp import cli, metrics, openapi

    openapi.init_app(app)
    metrics.init_app(app)
    app.cli.add_command(cli.pipeline)
    return app
