"""The project's layout, Makefile targets and docker compose file, as users rely on them."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_layout_of_the_design_card():
    for path in ("webapp", "tasks/ingestion", "tasks/validation", "tasks/processing",
                 "tasks/storage", "tests", "bench", "docker-compose.yml", "requirements.txt",
                 "requirements-dev.txt", "README.md", "Makefile", ".ci/run", "pyproject.toml"):
        assert (ROOT / path).exists(), path


def test_requirements_are_pinned_and_dev_tools_apart():
    runtime = (ROOT / "requirements.txt").read_text().splitlines()
    pins = [line for line in runtime if line and not line.startswith("#")]
    assert pins and all(re.fullmatch(r"[A-Za-z0-9_.\[\]-]+==[\w.]+", line) for line in pins)
    names = {line.split("==")[0].split("[")[0].lower() for line in pins}
    assert {"celery", "redis", "flask", "marshmallow", "sqlalchemy", "psycopg2-binary",
            "flower", "gunicorn"} <= names
    assert "pytest" not in names
    dev = (ROOT / "requirements-dev.txt").read_text()
    assert "-r requirements.txt" in dev and "pytest==" in dev and "ruff==" in dev


def test_makefile_targets_install_on_a_fresh_clone():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("run", "api", "worker", "flower", "test"):
        match = re.search(rf"^{target}: (.*)$", makefile, re.MULTILINE)
        assert match, target
        assert "$(STAMP)" in match.group(1), f"{target} must install the requirements first"
    assert "-r requirements-dev.txt" in makefile
    assert "--beat" not in makefile  # the launcher decides
    launcher = (ROOT / "stack" / "launcher.py").read_text()
    # Task events are Flower's to turn on (or TASK_EVENTS'), not always on.
    assert '"-E"' not in launcher and "enable_events" not in launcher


def test_docker_compose_services_commands_ports_and_health_checks():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "api", "worker", "flower"}
    for name, service in services.items():
        assert "healthcheck" in service and service["healthcheck"]["test"], name
    api, worker, flower = services["api"], services["worker"], services["flower"]
    assert api["command"][0] == "gunicorn" and "webapp:create_app()" in api["command"]
    assert "0.0.0.0:5000" in api["command"] and "5000:5000" in api["ports"]
    assert worker["command"][:4] == ["celery", "-A", "webapp.make_celery", "worker"]
    assert "-E" not in worker["command"]  # Flower turns task events on while it runs
    # Request metrics of both gunicorn workers in one scrape, from a folder empty at start.
    assert api["environment"]["PROMETHEUS_MULTIPROC_DIR"] in api["tmpfs"]
    assert not any("enable_events" in arg for arg in flower["command"])
    assert flower["command"][3] == "flower" and "5555:5555" in flower["ports"]
    assert any(arg.startswith("--basic-auth=${FLOWER_BASIC_AUTH") for arg in flower["command"])
    for name in ("api", "worker", "flower"):
        env = services[name]["environment"]
        assert {"DATABASE_URL", "CELERY_BROKER_URL", "API_KEYS", "HOST", "PORT"} <= set(env)
        assert env["DATABASE_URL"].startswith("postgresql+psycopg2://")
        assert "@postgres:5432/" in env["DATABASE_URL"]
        assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0"
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == deps["redis"]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "ping" in services["redis"]["healthcheck"]["test"]
