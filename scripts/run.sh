#!/usr/bin/env bash
# `make run`: the whole stack on this machine, bound to 127.0.0.1.
#   1. bootstrap the environments and jars        4. Airflow: api-server, scheduler, dag-processor
#   2. a sample city if the landing zone is empty 5. the city DAG, followed task by task
#   3. the Spark Connect server                   6. Superset (set up while 5 runs), provisioned
#                                                 7. the data service (catalogue, data API, open data)
# A second `make run` with nothing new delivered finds the day's run green and says so.
# `make stop` stops exactly what this started.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
export CITYLAKE_DATA_ROOT=${CITYLAKE_DATA_ROOT:-$REPO/var}
export SPARK_LOCAL_IP=127.0.0.1 GX_ANALYTICS_ENABLED=false
SCALE=${SCALE:-0.05}
started=$SECONDS
say() { printf '\n\033[1;36m[citylake %s]\033[0m %s\n' "$(date -u -d @$((SECONDS - started)) +%M:%S)" "$*"; }

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

# Superset's metadata schema and start take a minute of their own: done beside the pipeline.
mkdir -p "$CITYLAKE_DATA_ROOT/log"
superset_log=$CITYLAKE_DATA_ROOT/log/superset-setup.log
(scripts/superset.sh init && scripts/superset.sh start) >"$superset_log" 2>&1 &
superset_setup=$!

say "the city's day $DATE through Airflow (citylake_city; the other DAGs are for on-demand runs)"
pipeline=0
.venv/bin/citylake airflow-run --if-new --date "$DATE" || pipeline=$?

say "Superset"
if ! wait "$superset_setup"; then
  cat "$superset_log" >&2
  echo "Superset could not be set up; the log above is also in $superset_log" >&2
  exit 1
fi
if [[ $pipeline -ne 0 ]]; then
  echo "the pipeline failed (see above and \`.venv/bin/citylake status\`); Superset is up, not provisioned" >&2
  exit "$pipeline"
fi
# Superset's own INFO lines and SQLAlchemy warnings go to the log; the newcomer sees what was made.
if ! scripts/superset.sh provision >>"$superset_log" 2>&1; then
  tail -40 "$superset_log" >&2
  echo "Superset provisioning failed; the whole log is in $superset_log" >&2
  exit 1
fi
grep -E '^(imported|user) ' "$superset_log" | tail -n 20

say "the data service (sharing catalogue, data API, ID verification, Delta Sharing, open data)"
scripts/service.sh start
.venv/bin/citylake airflow-unpause citylake_sharing >/dev/null

.venv/bin/citylake summary
secrets=$CITYLAKE_DATA_ROOT/secrets
cat <<EOT

CityLake is running after $((SECONDS - started)) s (stop it with: make stop)
  Airflow   http://127.0.0.1:8080   user admin, password in $secrets/airflow_passwords.json (key "admin")
  Superset  http://127.0.0.1:8088   user admin, password in $secrets/superset_admin_password
            城市运行综合指挥 City Operations: http://127.0.0.1:8088/superset/dashboard/city_operations/
            also /superset/dashboard/{population,legal_entity_credit,licence_service,data_health,sharing_audit}/
            users leader, security, analyst_<county code>, engineer: passwords in $secrets/superset_<user>_password
  Quality   Data Docs $CITYLAKE_DATA_ROOT/quality/data_docs/index.html
            delivery reports $CITYLAKE_DATA_ROOT/quality/reports/<department>/<date>.md (citylake report <department>)
  Service   http://127.0.0.1:8090   数据共享交换服务: catalogue /catalogue, open data /open-data, API /docs
            each department's client credentials: $secrets/service_clients/<department>.json
            (OAuth2 client credentials → POST /oauth/token; approvals: .venv/bin/citylake sharing --help)
  SQL       $CITYLAKE_DATA_ROOT/serving/city.duckdb (DuckDB, personal data masked): .venv/bin/citylake sql
  Lake      $CITYLAKE_DATA_ROOT/lake/{bronze,silver,gold,quarantine,ops} (Delta)
EOT
