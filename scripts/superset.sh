#!/usr/bin/env bash
# Superset for CityLake: init | start | stop | status | provision. Every subcommand is idempotent.
#
#   scripts/superset.sh init        metadata schema, admin user (password in <secrets>), roles
#   scripts/superset.sh start       gunicorn on 127.0.0.1:<port>, own process group, waits for /health
#   scripts/superset.sh stop        stops exactly the process group in the pid file
#   scripts/superset.sh provision   imports dashboards/bundle (databases, datasets, charts, dashboards)
#                                   and applies dashboards/access.yaml (roles, users, row-level security)
#
# Locations come from citylake.config (CITYLAKE_ENV, CITYLAKE_DATA_ROOT), so a checkout anywhere and
# a test's temporary data root both work. CITYLAKE_SUPERSET_PORT overrides the configured port (tests
# use a free one so they never clash with a developer's Superset).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PLATFORM_PYTHON="${CITYLAKE_PLATFORM_PYTHON:-$REPO_ROOT/.venv/bin/python}"
SUPERSET_VENV="${CITYLAKE_SUPERSET_VENV:-$REPO_ROOT/.venv-superset}"
SUPERSET="$SUPERSET_VENV/bin/superset"

die() { echo "superset.sh: $*" >&2; exit 1; }

[[ -x "$PLATFORM_PYTHON" ]] || die "no platform Python at $PLATFORM_PYTHON (make the .venv first)"
[[ -x "$SUPERSET" ]] || die "no superset at $SUPERSET (make the .venv-superset first)"

# One call to citylake.config gives every location; it also refuses default production passwords.
SETTINGS_TEXT="$(cd "$REPO_ROOT" && "$PLATFORM_PYTHON" -c '
from citylake.config import load_environment
env = load_environment()
print(env.root)
print(env.serving_file)
print(env.secrets)
print(env.services.host)
print(env.services.superset_port)
print(env.metadata_url("superset"))
from pipelines.publish import restricted_file
print(restricted_file(env))
')" || die "could not read the CityLake environment (see the error above)"
mapfile -t SETTINGS <<<"$SETTINGS_TEXT"
DATA_ROOT="${SETTINGS[0]}"
SERVING_FILE="${SETTINGS[1]}"
SECRETS_DIR="${SETTINGS[2]}"
HOST="${SETTINGS[3]}"
PORT="${CITYLAKE_SUPERSET_PORT:-${SETTINGS[4]}}"
METADATA_URL="${SETTINGS[5]}"
RESTRICTED_FILE="${SETTINGS[6]}"

SUPERSET_HOME="$DATA_ROOT/superset"
PID_FILE="$DATA_ROOT/run/superset.pid"
LOG_FILE="$DATA_ROOT/log/superset.log"
SECRET_KEY_FILE="$SECRETS_DIR/superset_secret_key"
ADMIN_PASSWORD_FILE="$SECRETS_DIR/superset_admin_password"
BUNDLE_ZIP="$SUPERSET_HOME/bundle/citylake_dashboards.zip"
ADMIN_USER=admin

mkdir -p "$SUPERSET_HOME" "$DATA_ROOT/run" "$DATA_ROOT/log" "$DATA_ROOT/metadata"
(umask 077 && mkdir -p "$SECRETS_DIR")

# A secret is written once, readable by its owner only, and never printed.
ensure_secret() {
    local file="$1" bytes="$2"
    if [[ ! -s "$file" ]]; then
        (umask 077 && "$PLATFORM_PYTHON" -c "import secrets; print(secrets.token_urlsafe($bytes))" \
            >"$file.partial" && mv "$file.partial" "$file")
    fi
    chmod 600 "$file"
}
ensure_secret "$SECRET_KEY_FILE" 48

export SUPERSET_CONFIG_PATH="$REPO_ROOT/dashboards/superset_config.py"
export FLASK_APP="superset.app:create_app()"
export SUPERSET_HOME
export CITYLAKE_SUPERSET_SECRET_KEY="$(<"$SECRET_KEY_FILE")"
export CITYLAKE_SUPERSET_METADATA_URL="$METADATA_URL"
# Superset's own address: deck.gl maps fetch their (blank, offline) base tiles from it.
export CITYLAKE_SUPERSET_URL="http://$HOST:$PORT"
export PYTHONUNBUFFERED=1

running_pid() {
    # The pid from the pid file, if that process still lives and is still our gunicorn (after a
    # reboot the number may belong to another program); a stale file is removed.
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(<"$PID_FILE")"
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "gunicorn --bind"; then
        echo "$pid"
        return 0
    fi
    rm -f "$PID_FILE"
    return 1
}

cmd_init() {
    echo "superset: upgrading the metadata database"
    "$SUPERSET" db upgrade
    # Listed into a variable first: `list-users | grep -q` under pipefail fails whenever grep
    # stops reading early (SIGPIPE), which made a second init take the admin for absent and
    # write a new password that the existing admin did not have.
    local users
    users="$("$SUPERSET" fab list-users 2>/dev/null || true)"
    if grep -q "^username:$ADMIN_USER " <<<"$users"; then
        if [[ -s "$ADMIN_PASSWORD_FILE" ]]; then
            echo "superset: user $ADMIN_USER exists"
        else
            # Nobody could log in otherwise: the password lives only in the secrets folder.
            echo "superset: user $ADMIN_USER exists but $ADMIN_PASSWORD_FILE is missing; resetting"
            ensure_secret "$ADMIN_PASSWORD_FILE" 18
            "$SUPERSET" fab reset-password --username "$ADMIN_USER" \
                --password "$(<"$ADMIN_PASSWORD_FILE")" >/dev/null
        fi
    else
        rm -f "$ADMIN_PASSWORD_FILE"
        ensure_secret "$ADMIN_PASSWORD_FILE" 18
        "$SUPERSET" fab create-admin --username "$ADMIN_USER" --firstname CityLake \
            --lastname Admin --email "admin@citylake.invalid" \
            --password "$(<"$ADMIN_PASSWORD_FILE")"
        echo "superset: created $ADMIN_USER; password in $ADMIN_PASSWORD_FILE"
    fi
    echo "superset: syncing roles and permissions"
    "$SUPERSET" init
}

cmd_start() {
    local pid
    if pid="$(running_pid)"; then
        echo "superset: already running (pid $pid) on http://$HOST:$PORT"
        return 0
    fi
    # setsid makes gunicorn the leader of its own process group, so stop can end the master and
    # its workers together by the one id in the pid file. Two cores: two sync workers with a few
    # threads each serve a dashboard's parallel chart requests.
    setsid "$SUPERSET_VENV/bin/gunicorn" \
        --bind "$HOST:$PORT" \
        --workers 2 --worker-class gthread --threads 4 \
        --timeout 120 --graceful-timeout 20 \
        --limit-request-line 0 --limit-request-field_size 0 \
        --access-logfile "$DATA_ROOT/log/superset-access.log" \
        "superset.app:create_app()" \
        >>"$LOG_FILE" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PID_FILE"
    echo "superset: starting (pid $pid), log $LOG_FILE"
    local deadline=$((SECONDS + ${CITYLAKE_SUPERSET_START_TIMEOUT:-180}))
    until "$PLATFORM_PYTHON" -c "
import sys, httpx
try:
    sys.exit(0 if httpx.get('http://$HOST:$PORT/health', timeout=2).text.strip() == 'OK' else 1)
except httpx.HTTPError:
    sys.exit(1)
"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            tail -n 40 "$LOG_FILE" >&2
            die "gunicorn exited during start; see $LOG_FILE"
        fi
        if ((SECONDS > deadline)); then
            tail -n 40 "$LOG_FILE" >&2
            cmd_stop
            die "no answer from http://$HOST:$PORT/health in time; see $LOG_FILE"
        fi
        sleep 1
    done
    echo "superset: ready on http://$HOST:$PORT"
}

cmd_stop() {
    local pid
    if ! pid="$(running_pid)"; then
        echo "superset: not running"
        return 0
    fi
    # Negative id: the whole process group gunicorn leads (master and workers), nothing else.
    kill -TERM -- "-$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while kill -0 -- "-$pid" 2>/dev/null; do
        if ((SECONDS > deadline)); then
            echo "superset: still running after 30 s; sending SIGKILL to group $pid" >&2
            kill -KILL -- "-$pid" 2>/dev/null || true
            break
        fi
        sleep 0.5
    done
    rm -f "$PID_FILE"
    echo "superset: stopped (pid $pid)"
}

cmd_status() {
    local pid
    if pid="$(running_pid)"; then
        echo "superset: running (pid $pid) on http://$HOST:$PORT"
    else
        echo "superset: not running"
        return 3
    fi
}

cmd_provision() {
    # Databases, datasets, charts, dashboards (by fixed UUID), then roles, users and row-level
    # security from dashboards/access.yaml; users' passwords are generated into $SECRETS_DIR.
    "$SUPERSET_VENV/bin/python" "$REPO_ROOT/dashboards/provision.py" \
        --serving-file "$SERVING_FILE" --restricted-file "$RESTRICTED_FILE" \
        --superset-url "$CITYLAKE_SUPERSET_URL" --secrets-dir "$SECRETS_DIR" \
        --zip "$BUNDLE_ZIP" --username "$ADMIN_USER"
}

case "${1:-}" in
    init) cmd_init ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    provision) cmd_provision ;;
    *) die "usage: $0 init|start|stop|status|provision" ;;
esac
