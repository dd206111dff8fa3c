#!/usr/bin/env bash
# Creates or updates what CityLake runs on, idempotently:
#   .venv           the platform (Airflow, PySpark + Delta, Great Expectations, DuckDB), from requirements/platform.lock
#   .venv-superset  Superset (SQLAlchemy 1.4, so it cannot share .venv), from requirements/superset.lock
#   .cache/jars     the Delta Lake jars for Spark, resolved from Maven Central
# Each part is skipped when a stamp shows its lock file unchanged, so a run with nothing to do
# takes a second or two.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.8

say() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*"; }

uv_bin() {
  if command -v uv >/dev/null 2>&1 && [[ "$(uv --version)" == "uv ${UV_VERSION}"* ]]; then
    command -v uv
    return
  fi
  if [[ ! -x .cache/tools/bin/uv ]]; then
    say "installing uv ${UV_VERSION} into .cache/tools" >&2
    python3.11 -m venv .cache/tools >&2
    .cache/tools/bin/pip install -q "uv==${UV_VERSION}" >&2
  fi
  echo .cache/tools/bin/uv
}

sync_venv() {  # sync_venv <dir> <lock file> [editable project]
  local venv=$1 lock=$2 stamp="$1/.citylake-lock.sha256" want
  want=$(sha256sum "$lock" pyproject.toml | sha256sum | cut -c1-64)
  if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    say "$venv is up to date"
    return
  fi
  local uv
  uv=$(uv_bin)
  say "syncing $venv from $lock"
  [[ -x "$venv/bin/python" ]] || "$uv" venv -q --python python3.11 "$venv"
  VIRTUAL_ENV="$venv" "$uv" pip sync -q "$lock"
  if [[ "${3:-}" == "editable" ]]; then
    VIRTUAL_ENV="$venv" "$uv" pip install -q --no-deps -e .
  fi
  echo "$want" >"$stamp"
}

delta_jars() {
  if compgen -G ".cache/jars/delta-spark_*.jar" >/dev/null && compgen -G ".cache/jars/delta-storage-*.jar" >/dev/null; then
    say "Delta jars present in .cache/jars"
    return
  fi
  say "resolving the Delta jars from Maven Central"
  # -U: a failed lookup cached by an earlier offline attempt must not stick.
  mvn -q -B -U -f build/delta/pom.xml dependency:copy-dependencies
}

sync_venv .venv requirements/platform.lock editable
sync_venv .venv-superset requirements/superset.lock
delta_jars
say "ready"
