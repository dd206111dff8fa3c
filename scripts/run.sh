#!/usr/bin/env bash
# `make run`: the whole stack on this machine, bound to 127.0.0.1.
#   1. bootstrap the environments and jars        4. Airflow: api-server, scheduler, dag-processor
#   2. a sample city if the landing zone is empty 5. the pipeline, run by Airflow through its REST API
#   3. the Spark Connect server                   6. Superset, provisioned from dashboards/
# `make stop` stops exactly what this started.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
export CITYLAKE_DATA_ROOT=${CITYLAKE_DATA_ROOT:-$REPO/var}
export SPARK_LOCAL_IP=127.0.0.1 GX_ANALYTICS_ENABLED=false
SCALE=${SCALE:-0.05}
say() { printf '\n\033[1;36m[citylake]\033[0m %s\n' "$*"; }

scripts/bootstrap.sh
if [[ "${CITYLAKE_ENV:-local}" == production ]]; then
  say "production profile: PostgreSQL for the metadata of Airflow and Superset"
  scripts/postgres.sh start
fi

landing=$CITYLAKE_DATA_ROOT/landing/gongan/household_register
if [[ -z "$(ls -A "$landing" 2>/dev/null)" ]]; then
  say "landing zone empty: writing a sample city at scale $SCALE (SCALE=1.0 is the whole city)"
  .venv/bin/citylake sample --scale "$SCALE"
fi
DATE=${DATE:-$(ls "$landing" | sort | tail -1)}

say "Spark Connect server (tasks connect as thin clients: no JVM start per task)"
scripts/spark.sh connect-start
export CITYLAKE_SPARK_CONNECT=sc://127.0.0.1:${CITYLAKE_SPARK_CONNECT_PORT:-15002}

say "Airflow"
scripts/airflow.sh init
scripts/airflow.sh start

say "Superset"
scripts/superset.sh init
scripts/superset.sh start

say "running the city's pipeline for $DATE through Airflow: the city DAG, then every other DAG once"
.venv/bin/citylake airflow-run --all --date "$DATE"

say "provisioning Superset from dashboards/"
scripts/superset.sh provision

secrets=$CITYLAKE_DATA_ROOT/secrets
cat <<EOT

CityLake is running (stop it with: make stop)
  Airflow   http://127.0.0.1:8080   user admin, password in $secrets/airflow_passwords.json (key "admin")
  Superset  http://127.0.0.1:8088   user admin, password in $secrets/superset_admin_password
            城市运行综合指挥 City Operations: http://127.0.0.1:8088/superset/dashboard/city_operations/
            also /superset/dashboard/{population,legal_entity_credit,licence_service,data_health}/
            users leader, analyst_<county code>, engineer: passwords in $secrets/superset_<user>_password
  Quality   Data Docs $CITYLAKE_DATA_ROOT/quality/data_docs/index.html
            delivery reports $CITYLAKE_DATA_ROOT/quality/reports/<department>/<date>.md (citylake report <department>)
  SQL       $CITYLAKE_DATA_ROOT/serving/city.duckdb (DuckDB, personal data masked)
  Lake      $CITYLAKE_DATA_ROOT/lake/{bronze,silver,gold,quarantine,ops} (Delta)
EOT
