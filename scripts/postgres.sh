#!/usr/bin/env bash
# PostgreSQL for the production profile (CITYLAKE_ENV=production): a private cluster under
# <data root>/postgres, listening on 127.0.0.1:5433 only, holding Airflow's and Superset's metadata.
# The role and its password come from CITYLAKE_PG_USER / CITYLAKE_PG_PASSWORD; CityLake refuses a
# missing or well-known password (citylake.config). start|stop|status|path (of the cluster).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA_ROOT=${CITYLAKE_DATA_ROOT:-$REPO/var}
PORT=${CITYLAKE_PG_PORT:-5433}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -n $PGBIN ]] || { echo "PostgreSQL is not installed: run make system-deps" >&2; exit 1; }
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# The server runs as the postgres user, which may not reach a checkout under a private home
# (/root is mode 700): then the cluster lives in postgres's own home, one per data root.
PGDATA=${CITYLAKE_PG_DATA:-$DATA_ROOT/postgres}
mkdir -p "$DATA_ROOT"
if [[ -z ${CITYLAKE_PG_DATA:-} && $(id -u) == 0 ]] && ! runuser -u postgres -- test -x "$DATA_ROOT"; then
  PGDATA=/var/lib/postgresql/citylake/$(printf %s "$DATA_ROOT" | sha256sum | cut -c1-12)
  mkdir -p "$(dirname "$PGDATA")" && chown postgres: "$(dirname "$PGDATA")"
fi
psql_admin() { as_pg "$PGBIN/psql" -h "$PGDATA" -p "$PORT" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"; }

case ${1:-} in
  start)
    # Validates the credentials (refuses defaults) before anything starts.
    CITYLAKE_ENV=production "$REPO/.venv/bin/python" -c \
      "from citylake.config import load_environment as l; l('production').metadata_url('airflow')"
    if [[ ! -f $PGDATA/PG_VERSION ]]; then
      mkdir -p "$PGDATA"; [[ $(id -u) != 0 ]] || chown postgres: "$PGDATA"; chmod 700 "$PGDATA"
      as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
    fi
    if ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
      as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -w -l "$PGDATA/server.log" start \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k $PGDATA"
    fi
    user=$CITYLAKE_PG_USER
    password=${CITYLAKE_PG_PASSWORD//\'/\'\'}
    if [[ -z $(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$user'") ]]; then
      psql_admin -c "CREATE ROLE \"$user\" LOGIN PASSWORD '$password'"
    else
      psql_admin -c "ALTER ROLE \"$user\" PASSWORD '$password'"
    fi
    for db in citylake_airflow citylake_superset citylake_service; do
      [[ -n $(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$db'") ]] ||
        psql_admin -c "CREATE DATABASE $db OWNER \"$user\""
    done
    echo "PostgreSQL on 127.0.0.1:$PORT (data $PGDATA)" ;;
  stop)
    if [[ -f $PGDATA/postmaster.pid ]]; then as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop; fi ;;
  status) as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status ;;
  path) echo "$PGDATA" ;;
  *) echo "usage: $0 start|stop|status|path" >&2; exit 2 ;;
esac
