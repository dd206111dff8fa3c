# CityLake: `make run` brings the whole stack up on this machine, `make test` proves it.
SHELL := /bin/bash
export CITYLAKE_ENV ?= local
SCALE ?= 0.05
PY := .venv/bin/python

.PHONY: bootstrap run stop test test-fast lint format bench sample system-deps hostile

bootstrap:  ## create or update .venv, .venv-superset and the Delta jars (idempotent)
	@scripts/bootstrap.sh

system-deps:  ## Debian packages the tests need (chromium, CJK fonts, PostgreSQL); installs what is missing
	@scripts/system-deps.sh

run:  ## bootstrap, sample city if the landing zone is empty, start everything, run the pipeline
	@SCALE=$(SCALE) scripts/run.sh

stop:  ## stop exactly what `make run` started (by PID file)
	@scripts/stop.sh

sample: bootstrap  ## write a sample city into the landing zone (SCALE=1.0 for the whole city)
	@.venv/bin/citylake sample --scale $(SCALE)

test: bootstrap system-deps  ## every test: unit, DAGs, end to end, Airflow, browser, cluster, PostgreSQL
	@$(PY) -m pytest

test-fast: bootstrap  ## the tests that need no JVM, Airflow or browser
	@$(PY) -m pytest -m "not spark and not airflow and not browser and not cluster and not production"

hostile: bootstrap  ## plant every hard landing-zone case in a small city and check what became of each
	@rm -rf var/hostile && $(PY) scripts/hostile_city.py --work var/hostile

lint: bootstrap  ## ruff check, ruff format --check, and the import layers (lint-imports)
	@.venv/bin/ruff check . && .venv/bin/ruff format --check . && \
		.venv/bin/lint-imports --no-logo --cache-dir .cache/import-linter

format:
	@.venv/bin/ruff format . && .venv/bin/ruff check --fix .

bench: bootstrap  ## the figures of the foundation issue (SCALE=1.0 for the whole city)
	@$(PY) benchmarks/bench_sample.py --scale $(SCALE)
	@$(PY) benchmarks/bench_ingest.py --scale $(SCALE)
	@$(PY) benchmarks/bench_bootstrap.py
