# The two commands to start with: `make run` and `make test`.
# Every target creates .venv and installs the pinned requirements when they changed.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run api worker flower test test-unit lint migrate stop reset bench install clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

## API and worker in the foreground (private PostgreSQL + Redis unless DATABASE_URL is set)
run: $(STAMP)
	$(PY) -m stack run

## The API alone (gunicorn on HOST:PORT, default 127.0.0.1:5000)
api: $(STAMP)
	$(PY) -m stack api

## A worker alone, with the recovery sweep (task events while Flower watches)
worker: $(STAMP)
	$(PY) -m stack worker

## Flower on 127.0.0.1:5555 (FLOWER_BASIC_AUTH=user:password to protect it)
flower: $(STAMP)
	$(PY) -m stack flower

## The whole test suite: real PostgreSQL, Redis and worker processes
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q

test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

lint: $(STAMP)
	$(PY) -m ruff check .

migrate: $(STAMP)
	$(PY) -m stack migrate

## Stop the private servers left running by `make api` / `make worker`
stop: $(STAMP)
	$(PY) -m stack stop

## Stop the private servers and delete their data (./var)
reset: $(STAMP)
	$(PY) -m stack reset

## Benchmarks (about an hour: 1 GB files, 1M rows; bench/RESULTS.md has the figures); installs dlt
bench: $(STAMP)
	$(PY) -m pip install --quiet -r requirements-bench.txt
	status=0; for b in bench/bench_*.py; do $(PY) $$b || status=1; done; exit $$status

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
