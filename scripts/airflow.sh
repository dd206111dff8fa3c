#!/usr/bin/env bash
# Airflow for CityLake on one machine: api-server, scheduler and dag-processor, bound to 127.0.0.1.
#
#   scripts/airflow.sh init    migrate the metadata database, create the spark pool, generate the
#                              admin password (once) into <data root>/secrets/airflow_passwords.json
#   scripts/airflow.sh start   start the three services, each in its own process group; wait healthy
#   scripts/airflow.sh stop    stop exactly the processes this script started (pid files), no others
#   scripts/airflow.sh status  which services run, and the health the API server reports
#   scripts/airflow.sh env     print the export lines (eval "$(scripts/airflow.sh env)")
#
# Settings come from conf/ through citylake.config (CITYLAKE_ENV, CITYLAKE_DATA_ROOT, ...), so the
# data root, the metadata database and the port are the ones every other CityLake tool uses.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CITYLAKE_VENV:-$REPO/.venv}"
PY="$VENV/bin/python"
SERVICES=(api-server scheduler dag-processor)
START_TIMEOUT_S="${CITYLAKE_AIRFLOW_START_TIMEOUT:-180}"

die() { echo "airflow.sh: $*" >&2; exit 1; }

# Runs "$@" and restarts it when it exits with an error, at most MAX_RESTARTS times.
MAX_RESTARTS=5
SUPERVISE='restarts=0
while true; do
    "$@"
    code=$?
    if ((code == 0 || restarts >= '"$MAX_RESTARTS"')); then exit "$code"; fi
    restarts=$((restarts + 1))
    echo "airflow.sh: $0 exited with code $code at $(date -u +%FT%TZ); restart $restarts of '"$MAX_RESTARTS"' in 5 s" >&2
    sleep 5
done'

[[ -x "$PY" ]] || die "$PY not found: create the platform environment first (make bootstrap)"

# One Python call reads conf/: data root, host, port, metadata backend.
settings="$(cd "$REPO" && PYTHONPATH="$REPO" "$PY" -m citylake.airflow_setup shell-settings)" \
    || die "cannot read the CityLake configuration (see the error above)"
eval "$settings"  # sets DATA_ROOT HOST PORT BACKEND METADATA_URL

AIRFLOW_HOME="$DATA_ROOT/airflow"
LOG_DIR="$DATA_ROOT/log"
RUN_DIR="$DATA_ROOT/run"
SECRETS_DIR="$DATA_ROOT/secrets"
PASSWORDS_FILE="$SECRETS_DIR/airflow_passwords.json"

exports() {
    cat <<EOF
export PATH=$(printf %q "$VENV/bin"):"\$PATH"
export PYTHONPATH=$(printf %q "$REPO")
export CITYLAKE_DATA_ROOT=$(printf %q "$DATA_ROOT")
export CITYLAKE_ENV=$(printf %q "${CITYLAKE_ENV:-local}")
export AIRFLOW_HOME=$(printf %q "$AIRFLOW_HOME")
export AIRFLOW__CORE__DAGS_FOLDER=$(printf %q "$REPO/dags")
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
# Two cores: at most four task processes at once (Spark work itself is capped by the spark pool;
# the rest is Airflow bookkeeping and thin Spark Connect clients waiting on the server).
export AIRFLOW__CORE__PARALLELISM=4
export AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG=4
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=True
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=$(printf %q "$PASSWORDS_FILE")
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://$HOST:$PORT/execution/
export AIRFLOW__API__HOST=$HOST
export AIRFLOW__API__PORT=$PORT
export AIRFLOW__API__BASE_URL=http://$HOST:$PORT
export AIRFLOW__API__WORKERS=1
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=10
export AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL=30
export AIRFLOW__LOGGING__BASE_LOG_FOLDER=$(printf %q "$LOG_DIR/airflow")
export GX_ANALYTICS_ENABLED=false
export SPARK_LOCAL_IP=127.0.0.1
EOF
    if [[ "$BACKEND" == sqlite ]]; then
        echo "export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=$(printf %q "$METADATA_URL")"
    else
        # Production: Airflow asks citylake.config each time, so the password never appears here.
        # A plain ..._SQL_ALCHEMY_CONN inherited from the caller would win over the command.
        echo "unset AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"
        echo "export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD=$(printf %q "$PY -m citylake.airflow_setup metadata-url")"
    fi
    # Passed through to the tasks when set: a Spark Connect server, another conf/ (tests).
    local variable
    for variable in CITYLAKE_SPARK_CONNECT CITYLAKE_SPARK_MASTER CITYLAKE_CONF_DIR CITYLAKE_JARS_DIR \
        CITYLAKE_ALERT_LOG CITYLAKE_ALERT_WEBHOOK; do
        if [[ -n "${!variable:-}" ]]; then
            echo "export $variable=$(printf %q "${!variable}")"
        fi
    done
}

load_env() { eval "$(exports)"; }

pid_file() { echo "$RUN_DIR/airflow-$1.pid"; }

running_pid() {  # prints the pid of a service this script started, if that process still lives
    local file pid
    file="$(pid_file "$1")"
    [[ -f "$file" ]] || return 1
    pid="$(<"$file")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

cmd_init() {
    load_env
    mkdir -p "$AIRFLOW_HOME" "$LOG_DIR" "$RUN_DIR" "$SECRETS_DIR" "$DATA_ROOT/metadata"
    chmod 700 "$SECRETS_DIR"
    if [[ ! -s "$PASSWORDS_FILE" ]]; then
        # Airflow's simple auth manager reads {"user": "password"}; a fresh random one, never a default.
        (umask 077 && "$PY" -c 'import json, secrets; print(json.dumps({"admin": secrets.token_urlsafe(24)}))' \
            >"$PASSWORDS_FILE")
    fi
    # The scheduler preloads the pipeline's imports for the tasks it forks (see the file).
    mkdir -p "$AIRFLOW_HOME/config"
    (cd "$REPO" && "$PY" -m citylake.airflow_setup local-settings) >"$AIRFLOW_HOME/config/airflow_local_settings.py" \
        || die "cannot write $AIRFLOW_HOME/config/airflow_local_settings.py"
    echo "airflow.sh: migrating the metadata database ($BACKEND)"
    airflow db migrate >"$LOG_DIR/airflow-init.log" 2>&1 \
        || { tail -n 30 "$LOG_DIR/airflow-init.log" >&2; die "airflow db migrate failed, see $LOG_DIR/airflow-init.log"; }
    # The Spark tasks share the machine's cores: one slot per core (two on this machine).
    local slots
    slots="$(nproc 2>/dev/null || echo 2)"
    airflow pools set spark "$slots" "Spark tasks: one per core ($slots)" >>"$LOG_DIR/airflow-init.log" 2>&1 \
        || die "creating the spark pool failed, see $LOG_DIR/airflow-init.log"
    echo "airflow.sh: ready. UI user 'admin', password in $PASSWORDS_FILE"
}

cmd_start() {
    load_env
    [[ -s "$PASSWORDS_FILE" ]] || die "$PASSWORDS_FILE missing: run scripts/airflow.sh init first"
    mkdir -p "$LOG_DIR" "$RUN_DIR"
    local service pid
    for service in "${SERVICES[@]}"; do
        if pid="$(running_pid "$service")"; then
            echo "airflow.sh: $service already runs (pid $pid)"
            continue
        fi
        local args=("$service")
        [[ "$service" == api-server ]] && args+=(--host "$HOST" --port "$PORT")
        # Its log server binds every interface (host hard-coded ""); the API server reads the
        # task logs from the shared log folder instead.
        [[ "$service" == scheduler ]] && args+=(--skip-serve-logs)
        # setsid: its own session and process group, so stop can end it with all its children.
        # A service that dies is restarted (a few times) by its supervising shell, as systemd's
        # Restart=on-failure would; SIGTERM from stop ends the shell and the service alike.
        setsid bash -c "$SUPERVISE" "airflow $service" "$VENV/bin/airflow" "${args[@]}" \
            >"$LOG_DIR/airflow-$service.log" 2>&1 </dev/null &
        echo $! >"$(pid_file "$service")"
        echo "airflow.sh: started $service (pid $!, log $LOG_DIR/airflow-$service.log)"
    done
    wait_healthy
}

wait_healthy() {
    local url="http://$HOST:$PORT/api/v2/monitor/health" deadline=$((SECONDS + START_TIMEOUT_S)) body=""
    while ((SECONDS < deadline)); do
        for service in "${SERVICES[@]}"; do
            running_pid "$service" >/dev/null \
                || die "$service exited during start; see $LOG_DIR/airflow-$service.log"
        done
        body="$("$PY" -m citylake.airflow_setup health "$url" 2>/dev/null)" && {
            echo "airflow.sh: healthy after ${SECONDS}s: http://$HOST:$PORT (user admin, password in $PASSWORDS_FILE)"
            return 0
        }
        sleep 2
    done
    die "not healthy after ${START_TIMEOUT_S}s (last: ${body:-no answer}); logs in $LOG_DIR"
}

cmd_stop() {
    local service pid file
    for service in "${SERVICES[@]}"; do
        file="$(pid_file "$service")"
        [[ -f "$file" ]] || continue
        if pid="$(running_pid "$service")"; then
            # The pid leads its own process group (setsid): signal the group, children included.
            kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
            echo "airflow.sh: stopping $service (process group $pid)"
        fi
    done
    for service in "${SERVICES[@]}"; do
        file="$(pid_file "$service")"
        [[ -f "$file" ]] || continue
        pid="$(<"$file")"
        local waited=0
        while kill -0 -- "-$pid" 2>/dev/null && ((waited < 30)); do
            sleep 1
            waited=$((waited + 1))
        done
        if kill -0 -- "-$pid" 2>/dev/null; then
            echo "airflow.sh: $service (group $pid) ignored SIGTERM for 30 s: SIGKILL" >&2
            kill -KILL -- "-$pid" 2>/dev/null || true
        fi
        rm -f "$file"
    done
}

cmd_status() {
    local service pid
    for service in "${SERVICES[@]}"; do
        if pid="$(running_pid "$service")"; then echo "$service: running (pid $pid)"; else echo "$service: stopped"; fi
    done
    "$PY" -m citylake.airflow_setup health "http://$HOST:$PORT/api/v2/monitor/health" || true
}

case "${1:-}" in
    init) cmd_init ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) exports ;;
    *) echo "usage: $0 init|start|stop|status|env" >&2; exit 2 ;;
esac
