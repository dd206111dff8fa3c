#!/usr/bin/env bash
# `make stop`: stops exactly the processes `make run` started, by their PID files (never by name).
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/service.sh stop
scripts/superset.sh stop
scripts/airflow.sh stop
scripts/spark.sh connect-stop
[[ "${CITYLAKE_ENV:-local}" != production ]] || scripts/postgres.sh stop
